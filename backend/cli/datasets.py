"""The dataset commands: ``make-collection`` (a procedural training collection of meshes) and ``make-partials``
(cut copies of a collection's meshes for shape completion). Progress goes to stderr, summaries to stdout,
failures are one line, as in the other commands.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from backend.cli.output import err, fail, out, progress_bar
from backend.datasets.partials import make_partials
from backend.datasets.procedural import CLASSES, MANIFEST_NAME, ORIENTATIONS, Manifest, make_collection
from backend.errors import NeuralShapesError


def make_collection_command(
    out_dir: Annotated[Path, typer.Argument(metavar="OUT", help="Folder for the PLY meshes and manifest.json.")],
    count: Annotated[int, typer.Option(help="Number of meshes; the classes take turns.")] = 1000,
    seed: Annotated[int, typer.Option(help="Collection seed: the same seed gives the same files, byte for byte.")] = 0,
    classes: Annotated[
        str | None, typer.Option(help=f"Comma-separated classes (default: all of {','.join(CLASSES)}).")
    ] = None,
    messy_fraction: Annotated[
        float, typer.Option(help="Fraction of meshes given holes, flipped or duplicated faces.")
    ] = 0.05,
    orientation: Annotated[
        str,
        typer.Option(
            help=f"How shapes are turned ({'|'.join(ORIENTATIONS)}): mixed = 80% upright with any yaw, 20% any rotation "
            "(the meta family's); canonical = upright facing +X within 15 degrees (nf2vec's); yaw = upright, "
            "any yaw; full = any rotation."
        ),
    ] = "mixed",
) -> None:
    """Generate closed meshes of procedural classes plus manifest.json (labels, seeds); re-running resumes."""
    chosen = [name.strip() for name in classes.split(",")] if classes is not None else None
    started = time.perf_counter()
    with _meshes_bar(count) as show:
        try:
            manifest = make_collection(out_dir, count, seed, chosen, messy_fraction, show, orientation=orientation)
        except ValueError as error:
            fail(str(error))
        except OSError as error:
            fail(f"{error.filename or out_dir}: cannot write the collection ({error.strerror or error})")
    out.print(_summary(manifest))
    seconds = time.perf_counter() - started
    err.print(
        f"wrote {out_dir / MANIFEST_NAME} ({len(manifest.items)} meshes, {seconds:.1f} s)",
        highlight=False,
        soft_wrap=True,
    )


@contextmanager
def _meshes_bar(total: int | None = None) -> Iterator[Callable[[int, int], None]]:
    """A bar of meshes done on stderr, gone at the end (so an error line or the summary is what stays), and
    the ``progress(done, total)`` callback that moves it."""
    with progress_bar("meshes", status=False, counts=True, transient=True) as bar:
        task = bar.add_task("meshes", total=total)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _summary(manifest: Manifest) -> Table:
    """Meshes, messy meshes and the face-count range per class."""
    table = Table(title=f"collection in {manifest.root}  (seed {manifest.seed}, orientation {manifest.orientation})")
    for column in ("label", "class", "meshes", "messy", "faces"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for label, name in enumerate(manifest.classes):
        items = [item for item in manifest.items if item.label == label]
        faces = f"{min(i.faces for i in items)}-{max(i.faces for i in items)}" if items else "-"
        table.add_row(str(label), name, str(len(items)), str(sum(i.messy for i in items)), faces)
    return table


def make_partials_command(
    collection: Annotated[
        Path, typer.Argument(metavar="COLLECTION", help="A make-collection folder (with manifest.json).")
    ],
    out_dir: Annotated[Path, typer.Option("-o", "--output", help="Folder for NAME-cutK.ply and manifest.json.")],
    per_mesh: Annotated[int, typer.Option(help="Cut copies per mesh; plane and sphere cuts take turns.")] = 1,
    limit: Annotated[
        int | None, typer.Option(help="Only the first N meshes of the collection (manifest order).")
    ] = None,
    seed: Annotated[int, typer.Option(help="The same seed gives the same files, byte for byte.")] = 0,
) -> None:
    """Partial meshes: each collection mesh minus the faces beyond a random plane or inside a random sphere; re-running resumes."""
    started = time.perf_counter()
    with _meshes_bar() as show:
        try:
            manifest = make_partials(collection, out_dir, per_mesh, limit, seed, progress=show)
        except NeuralShapesError as error:
            fail(str(error))
        except OSError as error:
            fail(f"{error.filename or out_dir}: cannot write the partial meshes ({error.strerror or error})")
    cuts = [item.cut for item in manifest.items]
    kept = [item.kept_area for item in manifest.items]
    out.print(
        f"wrote {out_dir / MANIFEST_NAME}: {len(cuts)} partial meshes ({cuts.count('plane')} plane, "
        f"{cuts.count('sphere')} sphere cuts), {min(kept):.0%}-{max(kept):.0%} of the area kept, "
        f"{time.perf_counter() - started:.1f} s",
        highlight=False,
        soft_wrap=True,
    )
