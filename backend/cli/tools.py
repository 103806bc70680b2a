"""Tool commands: ``serve`` (the local HTTP service the Blender add-on talks to), ``info`` (what a shape file
holds) and ``build-addon`` (the Blender add-on zips)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Annotated

import typer

from backend.addon_build import build_addon
from backend.cli.output import fail, finite_or_none, out
from backend.errors import NeuralShapesError
from backend.service.config import MiB, ServiceSettings, default_data_dir, default_torch_threads
from backend.shapes.shape_file import read_shape


def serve(
    port: Annotated[int, typer.Option(help="TCP port; 0 picks a free one (the URL is printed first).")] = 0,
    host: Annotated[
        str, typer.Option(help="Loopback address to listen on: 127.0.0.1, ::1 or localhost.")
    ] = "127.0.0.1",
    data_dir: Annotated[
        Path | None,
        typer.Option(help=f"Library, jobs and token folder (default: {default_data_dir()}).", show_default=False),
    ] = None,
    workers: Annotated[int, typer.Option(help="Jobs running at once.")] = 1,
    torch_threads: Annotated[
        int, typer.Option(help="Threads torch may use for fitting (default: cores - 1).", show_default=False)
    ] = 0,
    fit_batch: Annotated[
        int, typer.Option(help="Meshes fitted together in one batched model (GPU: large; CPU: 1-4 is as fast).")
    ] = ServiceSettings.fit_batch,
    max_upload_mb: Annotated[
        float, typer.Option(help="Largest mesh upload or .h5 import, MiB.")
    ] = ServiceSettings.max_upload_bytes / MiB,
    compute_queue: Annotated[
        int, typer.Option(help="Mesh / render requests that may wait for the compute slot; more get 503 + Retry-After.")
    ] = ServiceSettings.compute_queue,
    compute_deadline: Annotated[
        float, typer.Option(help="Seconds after which a mesh / render request (waiting included) is stopped.")
    ] = ServiceSettings.compute_deadline_seconds,
    nf2vec_model: Annotated[
        str,
        typer.Option(
            help="nf2vec model folder for interpolate / generate / complete / similar / classify; 'default': the bundled one."
        ),
    ] = "default",
    nf2vec_decode: Annotated[
        str,
        typer.Option(hidden=True, help="Testing only: JSON overrides of DecodeSettings (quick, crude nf2vec results)."),
    ] = "",
) -> None:
    """Run the local HTTP service; prints 'listening on http://127.0.0.1:PORT' first. Stop with Ctrl-C.
    One service per data folder: a second one on the same folder exits with status 1 and one line."""
    from backend.service.server import serve as run_server  # FastAPI / uvicorn only when serving

    try:
        settings = ServiceSettings(
            data_dir=data_dir or default_data_dir(),
            host=host,
            port=port,
            workers=workers,
            torch_threads=torch_threads or default_torch_threads(),
            max_upload_bytes=int(max_upload_mb * MiB),
            fit_batch=fit_batch,
            nf2vec_model=nf2vec_model,
            nf2vec_decode=json.loads(nf2vec_decode) if nf2vec_decode else {},
            compute_queue=compute_queue,
            compute_deadline_seconds=compute_deadline,
        )
        run_server(settings, announce=lambda line: print(line, flush=True))
    except (NeuralShapesError, ValueError, OSError, RuntimeError) as error:
        fail(str(error))
    except sqlite3.Error as error:  # e.g. the index is on a read-only or full disk
        fail(f"{(data_dir or default_data_dir()) / 'index.sqlite3'}: {error}")


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
    out.print(
        f"[bold]{shape.name}[/bold]  {arch.describe()}, {arch.parameter_count} parameters, family {shape.family_id}"
    )
    out.print(f"transform: scale {shape.transform.scale:.6g}, centre {shape.transform.centre.round(6).tolist()}")
    for key, value in summary["metrics"].items():
        out.print(f"  {key:14s} {value}")
    for key, value in shape.provenance.items():
        out.print(f"  {key:14s} {value}")


def build_addon_command(
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the add-on zips.")],
) -> None:
    """Build the Blender add-on: an extension zip (Blender 4.2+) and a legacy add-on zip."""
    try:
        extension, legacy = build_addon(output)
    except OSError as error:
        fail(f"{output}: cannot write the add-on ({error.strerror or error})")
    out.print(f"{extension}\n{legacy}", highlight=False)
