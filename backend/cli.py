"""The ``neural-shapes`` command line. Commands call services in ``backend``; output tables go to stdout,
progress to stderr, and every failure is one line naming the file and the cause."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from backend import __version__
from backend.addon_build import build_addon
from backend.cli_collection import make_collection_command
from backend.cli_kernels import mesh, render
from backend.cli_meta import meta_train_command
from backend.cli_nf2vec import train_latent_command, train_latent_encoder_command, train_nf2vec_command
from backend.cli_nf2vec_ops import classify_command, complete_command, generate_command, interpolate_command, similar_command
from backend.cli_nf2vec_tasks import (
    build_neighbour_decoder_command,
    train_classifier_command,
    train_completion_command,
    train_gan_command,
    train_z_gan_command,
)
from backend.cli_output import err, fail, out
from backend.cli_partials import make_partials_command
from backend.cli_points import fit_points_command
from backend.cli_service import serve
from backend.conversion import (
    DEFAULT_FIT_BATCH,
    DEFAULT_RESOLUTION,
    convert_files,
    evaluate_shape,
    finite_or_none,
    fit_result_rows,
)
from backend.errors import NeuralShapesError
from backend.family_file import resolve_family
from backend.fitting import FitProgress, FitSettings
from backend.mesh_loading import DEFAULT_MAX_FACES, find_mesh_files, load_mesh_file
from backend.network import Architecture
from backend.shape_file import read_shape

app = typer.Typer(help="Turn meshes into weight-encoded neural implicits (neural SDFs), evaluate and mesh them.", no_args_is_help=True)
@app.callback()
def main(version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False) -> None:
    if version:
        out.print(__version__)
        raise typer.Exit()


@app.command()
def fit(
    paths: Annotated[list[Path], typer.Argument(help="Mesh files (OBJ, PLY, STL, OFF, GLB/glTF) or folders of them.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for NAME.h5 and NAME.obj outputs.")],
    target: Annotated[float, typer.Option(help="Surface error to stop at (normalised units).")] = FitSettings.target_surface_error,
    max_steps: Annotated[int, typer.Option(help="Step limit per shape.")] = FitSettings.max_steps,
    samples: Annotated[int, typer.Option(help="Importance samples per shape.")] = FitSettings.samples,
    beta: Annotated[float, typer.Option(help="Importance sampling sharpness: density ~ exp(-beta |sdf|).")] = FitSettings.beta,
    batch_size: Annotated[int, typer.Option(help="Points per shape per step.")] = FitSettings.batch_size,
    learning_rate: Annotated[float, typer.Option(help="Adam learning rate.")] = FitSettings.learning_rate,
    hidden_layers: Annotated[int, typer.Option(help="Hidden layers of the MLP.")] = 8,
    width: Annotated[int, typer.Option(help="Width of each hidden layer.")] = 32,
    activation: Annotated[str, typer.Option(help="relu (the paper's) or sine (SIREN).")] = "relu",
    family: Annotated[str, typer.Option(help="Model family: 'default' (bundled, meta-learned), 'random' / 'random:SEED', or a FAMILY.h5.")] = "default",
    fit_batch: Annotated[int, typer.Option(help="Shapes fitted together in one batched model.")] = DEFAULT_FIT_BATCH,
    resolution: Annotated[int, typer.Option(help="Marching cubes grid for the reconstruction and its metrics.")] = DEFAULT_RESOLUTION,
    half: Annotated[bool, typer.Option("--half", help="Store weights as float16.")] = False,
    max_faces: Annotated[int, typer.Option(help="Refuse meshes with more faces than this.")] = DEFAULT_MAX_FACES,
    seed: Annotated[int, typer.Option(help="Seed for sampling and batch order.")] = 0,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Leave meshes whose NAME.h5 is already in the output folder (resumes an interrupted run).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
) -> None:
    """Fit a neural SDF to every mesh; writes NAME.h5 and NAME.obj per mesh and prints a quality table."""
    try:
        architecture = Architecture.for_activation(activation, hidden_layers, width)
        chosen = resolve_family(family, architecture)
        settings = FitSettings(
            samples=samples, beta=beta, batch_size=batch_size, learning_rate=learning_rate,
            target_surface_error=target, max_steps=max_steps, seed=seed,
        )
    except (ValueError, NeuralShapesError) as error:
        fail(str(error))
    sources = find_mesh_files(paths)
    if not sources:
        fail("no mesh files found in " + ", ".join(map(str, paths)))
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=err) as bar:
        tasks = {s: bar.add_task(s.name, total=settings.max_steps, status="waiting") for s in sources}

        def show(source: Path, event: FitProgress) -> None:
            if event.stage == "sampling":
                bar.update(tasks[source], status="sampling")
            elif event.stage == "fitting":
                bar.update(tasks[source], completed=event.step, status=f"step {event.step}  surface error {event.surface_error:.4f}")
            else:
                status = f"done, {event.step} steps, surface error {event.surface_error:.4f}"
                bar.update(tasks[source], completed=settings.max_steps, status=status)
                if not err.is_terminal:  # logs and pipelines get a line per shape instead of a live bar
                    err.print(f"{source.name}: {status}", highlight=False)

        try:
            outcomes = convert_files(
                sources, output, chosen, settings, resolution=resolution, half_precision=half,
                max_faces=max_faces, fit_batch=fit_batch, skip_existing=skip_existing, progress=show,
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
        for column in ("source", "surface error", "chamfer", "F-score", "steps", "seconds", "output"):
            table.add_column(column, justify="left" if column in ("source", "output") else "right", overflow="fold")
        for row in rows:
            if row.get("error") or row.get("skipped"):
                continue
            chamfer = "-" if row["chamfer"] is None else f"{row['chamfer']:.4f}"
            table.add_row(Path(row["source"]).name, f"{row['surface_error']:.4f}", chamfer, f"{row['fscore']:.3f}",
                          str(row["steps"]), f"{row['fit_seconds']:.1f}", Path(row["output"]).name)
        out.print(table)
    failures = [o for o in outcomes if o.error]
    for outcome in failures:
        err.print(f"[red]failed:[/red] {outcome.error}", highlight=False, soft_wrap=True)
    if failures:
        raise typer.Exit(1)


@app.command("eval")
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
        metrics, _ = evaluate_shape(shape, source, resolution)
    except (NeuralShapesError, ValueError) as error:
        fail(str(error))
    result = {"surface_error": metrics["surface_error"], "chamfer": finite_or_none(metrics["chamfer"]), "fscore": metrics["fscore"]}
    if as_json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            out.print(f"{key:14s} {value}")


@app.command()
def info(
    shape_path: Annotated[Path, typer.Argument(metavar="SHAPE.h5", help="A neural shape file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Architecture, family, transform, metrics and provenance of a neural shape file."""
    try:
        shape = read_shape(shape_path)
    except NeuralShapesError as error:
        fail(str(error))
    arch = shape.architecture
    summary = {
        "name": shape.name,
        "architecture": {
            "layer_sizes": arch.layer_sizes,
            "activation": arch.activation,
            "output_activation": arch.output_activation,
            "parameters": arch.parameter_count,
        },
        "family_id": shape.family_id,
        "transform": {"scale": shape.transform.scale, "centre": shape.transform.centre.tolist()},
        "metrics": {k: finite_or_none(v) for k, v in shape.metrics.items()},
        "provenance": shape.provenance,
    }
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    out.print(f"[bold]{shape.name}[/bold]  {arch.describe()}, {arch.parameter_count} parameters, family {shape.family_id}")
    out.print(f"transform: scale {shape.transform.scale:.6g}, centre {shape.transform.centre.round(6).tolist()}")
    for key, value in summary["metrics"].items():
        out.print(f"  {key:14s} {value}")
    for key, value in shape.provenance.items():
        out.print(f"  {key:14s} {value}")


@app.command("build-addon")
def build_addon_command(
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the add-on zips.")],
) -> None:
    """Build the Blender add-on: an extension zip (Blender 4.2+) and a legacy add-on zip."""
    try:
        extension, legacy = build_addon(output)
    except OSError as error:
        fail(f"{output}: cannot write the add-on ({error.strerror or error})")
    out.print(f"{extension}\n{legacy}", highlight=False)


app.command()(mesh)
app.command()(render)
app.command("make-collection")(make_collection_command)
app.command("make-partials")(make_partials_command)
app.command()(serve)
app.command("meta-train")(meta_train_command)
app.command("fit-points")(fit_points_command)
app.command("train-nf2vec")(train_nf2vec_command)
app.command("train-latent")(train_latent_command)
app.command("train-latent-encoder")(train_latent_encoder_command)
app.command("train-gan")(train_gan_command)
app.command("train-z-gan")(train_z_gan_command)
app.command("train-classifier")(train_classifier_command)
app.command("train-completion")(train_completion_command)
app.command("build-neighbour-decoder")(build_neighbour_decoder_command)
app.command("interpolate")(interpolate_command)
app.command("generate")(generate_command)
app.command("complete")(complete_command)
app.command("similar")(similar_command)
app.command("classify")(classify_command)
