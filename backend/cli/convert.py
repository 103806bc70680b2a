"""The conversion commands: ``fit`` (meshes to neural shapes, with a quality table), ``eval`` (a shape's
quality against a mesh), and ``fit-points``
(neural shapes from point clouds or partial scans, no inside/outside given). Each cloud becomes NAME.h5 (a family member like any fitted shape) and
NAME.obj (its marching-cubes mesh in the cloud's own frame); failures are one line naming the file.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from backend.cli.output import err, fail, failing_on, finite_or_none, out, progress_bar, settings_from
from backend.errors import NeuralShapesError
from backend.files import safe_file_stem
from backend.fitting.batched import FitProgress, FitSettings, OpenMeshes
from backend.fitting.from_points import SurfaceFitSettings, fit_surface_points
from backend.fitting.pipeline import (
    DEFAULT_FIT_BATCH,
    DEFAULT_RESOLUTION,
    ConversionOutcome,
    Quality,
    convert_files,
    evaluate_shape,
    fitted_shape,
    shape_figures,
    write_in_source_frame,
)
from backend.meshes.extraction import extract_mesh
from backend.meshes.loading import DEFAULT_MAX_FACES, find_mesh_files, load_mesh_file
from backend.meshes.metrics import point_cloud_quality
from backend.meshes.point_clouds import load_point_cloud
from backend.meshes.visibility import visible_surface
from backend.shapes.architecture import Architecture
from backend.shapes.family_file import resolve_family
from backend.shapes.shape_file import read_shape, write_shape
from backend.torch_device import limit_torch_threads


def fit(
    paths: Annotated[list[Path], typer.Argument(help="Mesh files (OBJ, PLY, STL, OFF, GLB/glTF) or folders of them.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for NAME.h5 and NAME.obj outputs.")],
    target: Annotated[
        float, typer.Option(help="Surface error to stop at (normalised units).")
    ] = FitSettings.target_surface_error,
    max_steps: Annotated[int, typer.Option(help="Step limit per shape.")] = FitSettings.max_steps,
    samples: Annotated[int, typer.Option(help="Importance samples per shape.")] = FitSettings.samples,
    beta: Annotated[
        float, typer.Option(help="Importance sampling sharpness: density ~ exp(-beta |sdf|).")
    ] = FitSettings.beta,
    batch_size: Annotated[int, typer.Option(help="Points per shape per step.")] = FitSettings.batch_size,
    learning_rate: Annotated[float, typer.Option(help="Adam learning rate.")] = FitSettings.learning_rate,
    hidden_layers: Annotated[int, typer.Option(help="Hidden layers of the MLP.")] = 8,
    width: Annotated[int, typer.Option(help="Width of each hidden layer.")] = 32,
    activation: Annotated[str, typer.Option(help="relu (the paper's) or sine (SIREN).")] = "relu",
    family: Annotated[
        str,
        typer.Option(help="Model family: 'default' (bundled, meta-learned), 'random' / 'random:SEED', or a FAMILY.h5."),
    ] = "default",
    fit_batch: Annotated[int, typer.Option(help="Shapes fitted together in one batched model.")] = DEFAULT_FIT_BATCH,
    resolution: Annotated[
        int, typer.Option(help="Marching cubes grid for the reconstruction and its metrics.")
    ] = DEFAULT_RESOLUTION,
    half: Annotated[bool, typer.Option("--half", help="Store weights as float16.")] = False,
    max_faces: Annotated[int, typer.Option(help="Refuse meshes with more faces than this.")] = DEFAULT_MAX_FACES,
    seed: Annotated[int, typer.Option(help="Seed for sampling and batch order.")] = 0,
    skip_existing: Annotated[
        bool,
        typer.Option(
            "--skip-existing",
            help="Leave meshes whose NAME.h5 is already in the output folder (resumes an interrupted run).",
        ),
    ] = False,
    quality: Annotated[
        Quality,
        typer.Option(
            help="standard: the default net (nf2vec-ready, 32 kB files); high: shapes it cannot hold to the targets"
            " are fitted again with 8x64 and then 8x128 nets (slower, larger files, not usable by nf2vec)."
        ),
    ] = Quality.STANDARD,
    open_meshes: Annotated[
        OpenMeshes,
        typer.Option(
            help="How a mesh with large openings (an open car body, a bowl) is read: shell, a thin shell around its"
            " faces as the source has them; solid, the solid its winding number closes the openings of."
        ),
    ] = FitSettings.open_meshes,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
) -> None:
    """Fit a neural SDF to every mesh; writes NAME.h5 and NAME.obj per mesh and prints a quality table.

    A shape is done when it meets every target: surface error (mean |SDF| on the surface), its tail (99th
    percentile), and its reconstruction against the source both ways (F-score@0.01 >= 0.95, Chamfer <=
    0.010). The table's outcome column says which a shape missed."""
    with failing_on(ValueError, NeuralShapesError):
        architecture = Architecture.for_activation(activation, hidden_layers, width)
        chosen = resolve_family(family, architecture)
        settings = settings_from(FitSettings, locals(), target_surface_error=target)
    sources = find_mesh_files(paths)
    if not sources:
        fail("no mesh files found in " + ", ".join(map(str, paths)))
    with progress_bar() as bar:
        tasks = {s: bar.add_task(s.name, total=settings.max_steps, status="waiting") for s in sources}

        def show(source: Path, event: FitProgress) -> None:
            if event.stage == "sampling":
                bar.update(tasks[source], status="sampling")
            elif event.stage == "fitting":
                bar.update(
                    tasks[source],
                    completed=event.step,
                    status=f"step {event.step}  surface error {event.surface_error:.4f}",
                )
            else:
                status = f"done, {event.step} steps, surface error {event.surface_error:.4f}"
                bar.update(tasks[source], completed=settings.max_steps, status=status)
                if not err.is_terminal:  # logs and pipelines get a line per shape instead of a live bar
                    err.print(f"{source.name}: {status}", highlight=False)

        try:
            limit_torch_threads()
            outcomes = convert_files(
                sources,
                output,
                chosen,
                settings,
                resolution=resolution,
                half_precision=half,
                max_faces=max_faces,
                fit_batch=fit_batch,
                skip_existing=skip_existing,
                quality=quality,
                progress=show,
            )
        except NeuralShapesError as error:
            fail(str(error))
        for outcome in outcomes:
            if outcome.error:
                bar.update(tasks[outcome.source], status="[red]failed")
            elif outcome.skipped:
                bar.update(tasks[outcome.source], completed=settings.max_steps, status="skipped (output exists)")
    rows = fit_result_rows(outcomes)
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        table = Table(title=f"neural shapes in {output}  (family {chosen.family_id})")
        for column in ("source", "surface error", "tail", "chamfer", "F-score", "steps", "seconds", "net", "outcome"):
            justify = "left" if column in ("source", "net", "outcome") else "right"
            table.add_column(column, justify=justify, overflow="fold")
        for row in rows:
            if row.get("error") or row.get("skipped"):
                continue
            chamfer = "-" if row["chamfer"] is None else f"{row['chamfer']:.4f}"
            table.add_row(
                Path(row["source"]).name,
                f"{row['surface_error']:.4f}",
                f"{row['surface_error_p99']:.4f}",
                chamfer,
                f"{row['fscore']:.3f}",
                str(row["steps"]),
                f"{row['fit_seconds']:.1f}",
                row["net"],
                re.sub(r" [\d.inf]+ [<>] [\d.]+", "", row["outcome"]),  # the checks missed, without their figures
            )
        out.print(table)
    failures = [o for o in outcomes if o.error]
    for outcome in failures:
        err.print(f"[red]failed:[/red] {outcome.error}", highlight=False, soft_wrap=True)
    if failures:
        raise typer.Exit(1)


def evaluate(
    shape_path: Annotated[Path, typer.Argument(metavar="SHAPE.h5", help="A neural shape file.")],
    mesh: Annotated[Path, typer.Option(help="The source mesh to compare with (its own frame).")],
    resolution: Annotated[int, typer.Option(help="Marching cubes grid for Chamfer / F-score.")] = DEFAULT_RESOLUTION,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Surface error, Chamfer distance and F-score of a neural shape against a mesh (normalised units)."""
    try:
        shape = read_shape(shape_path)
        # Measure in the shape's own normalised frame: its stored transform, not a fresh normalisation.
        source = load_mesh_file(mesh, max_faces=sys.maxsize, transform=shape.transform)
        metrics = evaluate_shape(shape, visible_surface(source), resolution).metrics  # as fit measured it
    except (NeuralShapesError, ValueError) as error:
        fail(str(error))
    result = {
        "surface_error": metrics["surface_error"],
        "chamfer": finite_or_none(metrics["chamfer"]),
        "fscore": metrics["fscore"],
    }
    if as_json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            out.print(f"{key:14s} {value}")


def fit_points_command(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Point clouds: PLY (optional nx ny nz), XYZ/TXT (x y z [nx ny nz]), or mesh files' vertices."
        ),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for NAME.h5 and NAME.obj outputs.")],
    partial: Annotated[
        bool, typer.Option("--partial", help="The points cover only part of the surface (a scan from one side).")
    ] = False,
    family: Annotated[
        str, typer.Option(help="Model family: 'default', 'random' / 'random:SEED', or a FAMILY.h5.")
    ] = "default",
    steps: Annotated[int, typer.Option(help="Adam steps.")] = SurfaceFitSettings.steps,
    resolution: Annotated[int, typer.Option(help="Marching cubes grid of the output mesh and its metrics.")] = 128,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of lines.")] = False,
) -> None:
    """Fit a neural SDF to points on a surface only: whole point clouds, or partial scans with --partial."""
    try:
        chosen = resolve_family(family)
        settings = replace(SurfaceFitSettings(), steps=steps)
        output.mkdir(parents=True, exist_ok=True)
    except (NeuralShapesError, OSError) as error:
        fail(str(error))
    limit_torch_threads()
    rows, failures = [], 0
    for path in paths:
        try:
            cloud = load_point_cloud(path)
            with err.status(f"fitting {path.name} ({len(cloud.points):,} points)"):
                result = fit_surface_points(
                    chosen, cloud.points, cloud.normals, complete=not partial, settings=settings
                )
            shape = fitted_shape(cloud, result, chosen, source_name=path.name)
            reconstruction = extract_mesh(shape.architecture, shape.weights, resolution)
            quality = point_cloud_quality(cloud.points, reconstruction)
            shape.metrics.update(
                surface_error=result.surface_error_estimate, chamfer=quality.chamfer, fscore=quality.fscore
            )
            stem = safe_file_stem(cloud.name)
            write_in_source_frame(output / f"{stem}.obj", reconstruction, cloud.transform)
            write_shape(output / f"{stem}.h5", shape)
        except NeuralShapesError as error:
            err.print(f"[red]failed:[/red] {error}", highlight=False, soft_wrap=True)
            failures += 1
            continue
        rows.append(
            {
                "source": str(path),
                "output": str(output / f"{stem}.h5"),
                "points": len(cloud.points),
                "normals": cloud.normals is not None,
                **{k: shape.metrics[k] for k in ("surface_error", "chamfer", "fscore", "fit_seconds")},
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            out.print(
                f"{Path(row['source']).name}: surface error {row['surface_error']:.4f}, Chamfer {row['chamfer']:.4f}, "
                f"F-score {row['fscore']:.3f}, {row['fit_seconds']:.1f} s -> {row['output']}",
                highlight=False,
            )
    if failures:
        raise typer.Exit(1)


def fit_result_rows(outcomes: list[ConversionOutcome]) -> list[dict]:
    """The ``--json`` rows of ``fit``: source, outputs, quality figures, steps, seconds, the net and the
    outcome of the checks ("targets met" or what failed), or the error."""
    rows = []
    for o in outcomes:
        if o.skipped:
            rows.append({"source": str(o.source), "output": str(o.output), "skipped": True})
            continue
        if o.shape is None:
            rows.append({"source": str(o.source), "output": None, "error": o.error})
            continue
        figures = shape_figures(o.shape)
        rows.append(
            {
                "source": str(o.source),
                "output": str(o.output),
                "mesh": str(o.mesh_output),
                **figures,
                "chamfer": finite_or_none(figures["chamfer"]),
                "escalation": o.shape.provenance.get("escalation"),
            }
        )
    return rows
