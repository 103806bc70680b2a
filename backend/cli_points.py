"""The ``fit-points`` command: neural shapes from point clouds or partial scans (no inside/outside given).

``backend.cli`` registers it. Each cloud becomes NAME.h5 (a family member like any fitted shape) and
NAME.obj (its marching-cubes mesh in the cloud's own frame); failures are one line naming the file.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from backend.cli_output import err, fail, out
from backend.conversion import fitted_shape, to_source_frame, write_mesh_atomically
from backend.errors import NeuralShapesError
from backend.extraction import extract_mesh
from backend.family_file import resolve_family
from backend.files import safe_file_stem
from backend.metrics import point_cloud_quality
from backend.point_clouds import load_point_cloud
from backend.shape_file import write_shape
from backend.surface_fitting import SurfaceFitSettings, fit_surface_points


def fit_points_command(
    paths: Annotated[list[Path], typer.Argument(help="Point clouds: PLY (optional nx ny nz), XYZ/TXT (x y z [nx ny nz]), or mesh files' vertices.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for NAME.h5 and NAME.obj outputs.")],
    partial: Annotated[bool, typer.Option("--partial", help="The points cover only part of the surface (a scan from one side).")] = False,
    family: Annotated[str, typer.Option(help="Model family: 'default', 'random' / 'random:SEED', or a FAMILY.h5.")] = "default",
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
    rows, failures = [], 0
    for path in paths:
        try:
            cloud = load_point_cloud(path)
            with err.status(f"fitting {path.name} ({len(cloud.points):,} points)"):
                result = fit_surface_points(chosen, cloud.points, cloud.normals, complete=not partial, settings=settings)
            shape = fitted_shape(cloud, result, chosen, source_name=path.name)
            reconstruction = extract_mesh(shape.architecture, shape.weights, resolution)
            quality = point_cloud_quality(cloud.points, reconstruction)
            shape.metrics.update(surface_error=result.surface_error_estimate, chamfer=quality.chamfer, fscore=quality.fscore)
            stem = safe_file_stem(cloud.name)
            write_mesh_atomically(to_source_frame(reconstruction, cloud.transform), output / f"{stem}.obj")
            write_shape(output / f"{stem}.h5", shape)
        except NeuralShapesError as error:
            err.print(f"[red]failed:[/red] {error}", highlight=False, soft_wrap=True)
            failures += 1
            continue
        rows.append({"source": str(path), "output": str(output / f"{stem}.h5"), "points": len(cloud.points),
                     "normals": cloud.normals is not None, **{k: shape.metrics[k] for k in ("surface_error", "chamfer", "fscore", "fit_seconds")}})
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            out.print(f"{Path(row['source']).name}: surface error {row['surface_error']:.4f}, Chamfer {row['chamfer']:.4f}, "
                      f"F-score {row['fscore']:.3f}, {row['fit_seconds']:.1f} s -> {row['output']}", highlight=False)
    if failures:
        raise typer.Exit(1)
