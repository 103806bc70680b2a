"""The ``serve`` command: the local HTTP service the Blender add-on talks to (``backend.cli`` registers it)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Annotated

import typer

from backend.cli_output import fail
from backend.errors import NeuralShapesError
from backend.service.config import MiB, ServiceSettings, default_data_dir, default_torch_threads


def serve(
    port: Annotated[int, typer.Option(help="TCP port; 0 picks a free one (the URL is printed first).")] = 0,
    host: Annotated[str, typer.Option(help="Loopback address to listen on: 127.0.0.1, ::1 or localhost.")] = "127.0.0.1",
    data_dir: Annotated[Path | None, typer.Option(help=f"Library, jobs and token folder (default: {default_data_dir()}).", show_default=False)] = None,
    workers: Annotated[int, typer.Option(help="Jobs running at once.")] = 1,
    torch_threads: Annotated[int, typer.Option(help="Threads torch may use for fitting (default: cores - 1).", show_default=False)] = 0,
    fit_batch: Annotated[int, typer.Option(help="Meshes fitted together in one batched model (GPU: large; CPU: 1-4 is as fast).")] = ServiceSettings.fit_batch,
    max_upload_mb: Annotated[float, typer.Option(help="Largest mesh upload or .h5 import, MiB.")] = ServiceSettings.max_upload_bytes / MiB,
    compute_queue: Annotated[int, typer.Option(help="Mesh / render requests that may wait for the compute slot; more get 503 + Retry-After.")] = ServiceSettings.compute_queue,
    compute_deadline: Annotated[float, typer.Option(help="Seconds after which a mesh / render request (waiting included) is stopped.")] = ServiceSettings.compute_deadline_seconds,
    nf2vec_model: Annotated[str, typer.Option(help="nf2vec model folder for interpolate / generate / complete / similar / classify; 'default': the bundled one.")] = "default",
    nf2vec_decode: Annotated[str, typer.Option(hidden=True, help="Testing only: JSON overrides of DecodeSettings (quick, crude nf2vec results).")] = "",
) -> None:
    """Run the local HTTP service; prints 'listening on http://127.0.0.1:PORT' first. Stop with Ctrl-C.
    One service per data folder: a second one on the same folder exits with status 1 and one line."""
    from backend.service.server import serve as run_server  # FastAPI / uvicorn only when serving

    try:
        settings = ServiceSettings(
            data_dir=data_dir or default_data_dir(), host=host, port=port, workers=workers,
            torch_threads=torch_threads or default_torch_threads(), max_upload_bytes=int(max_upload_mb * MiB),
            fit_batch=fit_batch, nf2vec_model=nf2vec_model, nf2vec_decode=json.loads(nf2vec_decode) if nf2vec_decode else {},
            compute_queue=compute_queue, compute_deadline_seconds=compute_deadline,
        )
        run_server(settings, announce=lambda line: print(line, flush=True))
    except (NeuralShapesError, ValueError, OSError, RuntimeError) as error:
        fail(str(error))
    except sqlite3.Error as error:  # e.g. the index is on a read-only or full disk
        fail(f"{(data_dir or default_data_dir()) / 'index.sqlite3'}: {error}")
