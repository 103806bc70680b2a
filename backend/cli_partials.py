"""The ``make-partials`` command: cut copies of a collection's meshes for shape completion;
``backend.cli`` registers it. Progress goes to stderr, the summary line to stdout."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from backend.cli_output import err, fail, out
from backend.errors import NeuralShapesError
from backend.partials import MANIFEST_NAME, make_partials


def make_partials_command(
    collection: Annotated[Path, typer.Argument(metavar="COLLECTION", help="A make-collection folder (with manifest.json).")],
    out_dir: Annotated[Path, typer.Option("-o", "--output", help="Folder for NAME-cutK.ply and manifest.json.")],
    per_mesh: Annotated[int, typer.Option(help="Cut copies per mesh; plane and sphere cuts take turns.")] = 1,
    limit: Annotated[int | None, typer.Option(help="Only the first N meshes of the collection (manifest order).")] = None,
    seed: Annotated[int, typer.Option(help="The same seed gives the same files, byte for byte.")] = 0,
) -> None:
    """Partial meshes: each collection mesh minus the faces beyond a random plane or inside a random sphere; re-running resumes."""
    started = time.perf_counter()
    with Progress(TextColumn("meshes"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True) as bar:
        task = bar.add_task("meshes", total=None)
        try:
            manifest = make_partials(collection, out_dir, per_mesh, limit, seed,
                                     progress=lambda done, total: bar.update(task, completed=done, total=total))
        except NeuralShapesError as error:
            fail(str(error))
        except OSError as error:
            fail(f"{error.filename or out_dir}: cannot write the partial meshes ({error.strerror or error})")
    cuts = [item.cut for item in manifest.items]
    kept = [item.kept_area for item in manifest.items]
    out.print(f"wrote {out_dir / MANIFEST_NAME}: {len(cuts)} partial meshes ({cuts.count('plane')} plane, "
              f"{cuts.count('sphere')} sphere cuts), {min(kept):.0%}-{max(kept):.0%} of the area kept, "
              f"{time.perf_counter() - started:.1f} s", highlight=False, soft_wrap=True)
