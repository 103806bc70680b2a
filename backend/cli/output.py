"""Consoles and the failure exit shared by every command of the ``neural-shapes`` command line.

Tables and results go to stdout (``out``), progress and errors to stderr (``err``), so ``--json``
output stays machine-readable.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import numpy as np
import typer
from rich.console import Console

from backend.errors import NeuralShapesError

out = Console()
err = Console(stderr=True)


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit with status 1."""
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def finite_or_none(value: float) -> float | None:
    """JSON has no infinity: an empty reconstruction's Chamfer distance is reported as null."""
    return float(value) if np.isfinite(value) else None


def shape_files(paths: list[Path]) -> list[Path]:
    """The neural shape files named: folders expanded to the ``.h5`` files in them (sorted), files kept as given."""
    files = [file for path in paths for file in (sorted(path.glob("*.h5")) if path.is_dir() else [path])]
    if not files:
        raise NeuralShapesError(f"no neural shape files (.h5) in {', '.join(map(str, paths))}")
    return files
