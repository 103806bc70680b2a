"""Consoles and the failure exit shared by every command of the ``neural-shapes`` command line.

Tables and results go to stdout (``out``), progress and errors to stderr (``err``), so ``--json``
output stays machine-readable.
"""

from __future__ import annotations

from typing import NoReturn

import numpy as np
import typer
from rich.console import Console

out = Console()
err = Console(stderr=True)


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit with status 1."""
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def finite_or_none(value: float) -> float | None:
    """JSON has no infinity: an empty reconstruction's Chamfer distance is reported as null."""
    return float(value) if np.isfinite(value) else None
