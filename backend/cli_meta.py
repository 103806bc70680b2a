"""The ``meta-train`` command: learn a model family (MetaSDF / Meta-SGD) on a procedural collection.

``backend.cli`` registers it. Progress goes to stderr (a bar, or a line per evaluation when stderr is
not a terminal); the samples cache and checkpoint sit next to the output so an interrupted run resumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from backend.cli_output import err, fail, out
from backend.collection import read_manifest
from backend.errors import NeuralShapesError
from backend.meta_learning import MetaProgress, MetaSettings, collection_samples, meta_train

DEFAULTS = MetaSettings()


def meta_train_command(
    collection: Annotated[Path, typer.Argument(help="A collection folder (manifest.json), e.g. from make-collection.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The family file to write (FAMILY.h5).")],
    steps: Annotated[int, typer.Option(help="Outer (meta) steps.")] = DEFAULTS.outer_steps,
    inner_steps: Annotated[int, typer.Option(help="Gradient steps of the inner loop.")] = DEFAULTS.inner_steps,
    inner_batch: Annotated[int, typer.Option(help="Points per shape per inner step.")] = DEFAULTS.inner_batch,
    meta_batch: Annotated[int, typer.Option(help="Shapes per outer step.")] = DEFAULTS.meta_batch,
    learning_rate: Annotated[float, typer.Option(help="Outer Adam learning rate.")] = DEFAULTS.outer_learning_rate,
    samples_per_shape: Annotated[int, typer.Option(help="Importance samples cached per mesh.")] = DEFAULTS.samples_per_shape,
    first_order: Annotated[bool, typer.Option("--first-order", help="Treat inner gradients as constants (cheaper).")] = False,
    exclude_classes: Annotated[str, typer.Option(help="Comma-separated classes to leave out (held out for benchmarks).")] = "",
    name: Annotated[str, typer.Option(help="Family name (its id adds a hash of the weights).")] = "meta",
    seed: Annotated[int, typer.Option(help="Seed of the starting weights and of the task draws.")] = DEFAULTS.seed,
) -> None:
    """Meta-train a family: initial weights + per-parameter inner learning rates for few-step fitting."""
    try:
        manifest = read_manifest(collection)
        excluded = [c for c in exclude_classes.split(",") if c]
        unknown = sorted(set(excluded) - set(manifest.classes))
        if unknown:
            raise NeuralShapesError(f"unknown classes {', '.join(unknown)} (the collection has {', '.join(manifest.classes)})")
        paths = manifest.mesh_paths(exclude=excluded)
        if not paths:
            raise NeuralShapesError(f"{collection}: no meshes left to train on")
        settings = MetaSettings(
            inner_steps=inner_steps, inner_batch=inner_batch, meta_batch=meta_batch, outer_steps=steps,
            outer_learning_rate=learning_rate, samples_per_shape=samples_per_shape, first_order=first_order, seed=seed,
        )
    except NeuralShapesError as error:
        fail(str(error))
    cache = manifest.root / f"samples-{samples_per_shape}-seed{seed}.h5"
    checkpoint = output.with_name(output.name + ".checkpoint.safetensors")
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=err) as bar:
        sampling = bar.add_task("sampling", total=len(paths), status="")
        training = bar.add_task("meta-training", total=steps, status="")

        def show(event: MetaProgress) -> None:
            if event.stage == "sampling":
                bar.update(sampling, completed=event.step, status=f"{event.step}/{event.total} meshes")
                if not err.is_terminal and (event.step % 100 == 0 or event.step == event.total):
                    err.print(f"meta-train: sampled {event.step}/{event.total} meshes", highlight=False)
                return
            status = f"step {event.step}  loss {event.train_loss:.4f}"
            if event.held_out_loss == event.held_out_loss:  # an evaluation step (not NaN)
                status += f"  held-out {event.held_out_loss:.4f}"
                if not err.is_terminal:
                    err.print(f"meta-train: {status}", highlight=False)
            bar.update(training, completed=event.step, status=status)

        try:
            samples = collection_samples(paths, cache, settings, progress=show)
            family = meta_train(samples, output, settings, name=name, checkpoint=checkpoint, progress=show)
        except NeuralShapesError as error:
            fail(str(error))
    checkpoint.unlink(missing_ok=True)
    out.print(f"wrote {output}: family {family.family_id}, {family.inner_steps} inner steps, "
              f"{len(paths)} meshes, {family.provenance['train_seconds']} s of training")
