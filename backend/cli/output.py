"""Consoles and the failure exit shared by every command of the ``neural-shapes`` command line.

Tables and results go to stdout (``out``), progress and errors to stderr (``err``), so ``--json``
output stays machine-readable.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import NoReturn, TypeVar

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from backend.errors import NeuralShapesError

out = Console()
err = Console(stderr=True)

T = TypeVar("T")


def print_result(line: str) -> None:
    """Print a result line to stdout as written: no highlighting, no wrapping."""
    out.print(line, highlight=False, soft_wrap=True)


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit with status 1."""
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@contextmanager
def failing_on(*errors: type[Exception]) -> Iterator[None]:
    """Turn ``errors`` (default: :class:`NeuralShapesError`) raised in the block into :func:`fail`'s exit."""
    caught = errors or (NeuralShapesError,)
    try:
        yield
    except caught as error:
        fail(str(error))


def settings_from(settings: type[T], options: dict[str, object], **renamed: object) -> T:
    """The ``settings`` dataclass filled from a command's ``options`` (its ``locals()``) of the same names as
    its fields, plus the ``renamed`` ones; the other fields keep their defaults."""
    names = {field.name for field in fields(settings)}
    return settings(**{name: value for name, value in options.items() if name in names}, **renamed)


def progress_bar(
    label: str = "{task.description}", *, status: bool = True, counts: bool = False, transient: bool = False
) -> Progress:
    """The command line's progress bar on stderr: a label, the bar, the task's ``status`` field and/or its
    ``counts`` (done/total), and the time elapsed; a ``transient`` one goes away once done."""
    columns = [TextColumn("{task.fields[status]}")] if status else []
    columns += [MofNCompleteColumn()] if counts else []
    return Progress(TextColumn(label), BarColumn(), *columns, TimeElapsedColumn(), console=err, transient=transient)


def finite_or_none(value: float) -> float | None:
    """JSON has no infinity: an empty reconstruction's Chamfer distance is reported as null."""
    return float(value) if np.isfinite(value) else None


def shape_files(paths: list[Path]) -> list[Path]:
    """The neural shape files named: folders expanded to the ``.h5`` files in them (sorted), files kept as given."""
    files = [file for path in paths for file in (sorted(path.glob("*.h5")) if path.is_dir() else [path])]
    if not files:
        raise NeuralShapesError(f"no neural shape files (.h5) in {', '.join(map(str, paths))}")
    return files
