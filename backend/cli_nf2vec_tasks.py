"""The ``train-gan``, ``train-classifier``, ``train-completion`` and ``build-neighbour-decoder`` commands:
networks on the embeddings of a trained nf2vec model, each written into the model folder (``gan.safetensors``,
``classifier.safetensors``, ``transfer.safetensors``, ``neighbours.safetensors``); and ``train-z-gan``: the
GAN on the latent family's z (``z_gan.safetensors``); ``backend.cli`` registers them.

Shapes are ``.h5`` files or folders of them, embedded with the model in ``--model``. Classes come from a
collection manifest by each shape's source mesh; completion pairs from a partials manifest (see
:mod:`backend.nf2vec.task_data`). Progress goes to stderr, the one-line summary to stdout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from backend.cli_output import err, fail, out
from backend.collection import read_manifest
from backend.errors import NeuralShapesError
from backend.nf2vec.classifier import ClassifierSettings, save_classifier, train_classifier
from backend.nf2vec.downstream import TaskProgress
from backend.nf2vec.embedding import embed
from backend.nf2vec.latent import load_latent
from backend.nf2vec.latent_gan import LatentGanSettings, save_gan, train_latent_gan
from backend.nf2vec.model import load_model
from backend.nf2vec.neighbour_decoder import NeighbourSettings, build_neighbour_decoder, save_neighbour_decoder
from backend.nf2vec.task_data import completion_pairs, shape_classes
from backend.nf2vec.transfer import TransferSettings, save_transfer, train_transfer
from backend.nf2vec.z_gan import Z_GAN_NAME, Z_GAN_SETTINGS, train_z_gan, training_labels
from backend.partials import read_partials_manifest
from backend.shape_file import NeuralShape, read_shape

GAN = LatentGanSettings()
CLASSIFIER = ClassifierSettings()
TRANSFER = TransferSettings()

Shapes = Annotated[list[Path], typer.Argument(help="Neural shape files (.h5) of the model's family, or folders of them.")]
ModelDir = Annotated[Path, typer.Option("--model", help="The nf2vec model folder (from train-nf2vec); the network is written into it.")]
Collection = Annotated[Path, typer.Option(help="The collection folder whose manifest gives each shape's class, by its source mesh.")]
Seed = Annotated[int, typer.Option(help="Seed of the initial network and the draws.")]


def build_neighbour_decoder_command(
    paths: Shapes,
    model_dir: ModelDir,
    k: Annotated[int, typer.Option("-k", help="Anchors blended per decoded embedding.")] = NeighbourSettings.k,
) -> None:
    """Keep the shapes as anchors of the neighbour decoder (neighbours.safetensors in the model folder)."""
    try:
        shapes, embeddings = _embedded(model_dir, paths)
        decoder = build_neighbour_decoder(embeddings, [s.weights for s in shapes], [s.name for s in shapes],
                                          shapes[0].architecture, NeighbourSettings(k=k))
        path = save_neighbour_decoder(model_dir, decoder)
    except (ValueError, NeuralShapesError) as error:
        fail(str(error))
    out.print(f"wrote {path}: neighbour decoder over {len(shapes)} anchors, k {k}, "
              f"temperature {decoder.training['temperature']:.4g}", highlight=False, soft_wrap=True)


def train_gan_command(
    paths: Shapes,
    model_dir: ModelDir,
    collection: Annotated[Path | None, typer.Option(help="The collection folder whose manifest gives each shape's class (needed with --conditional).")] = None,
    conditional: Annotated[bool, typer.Option("--conditional/--unconditional", help="Condition on the class, so one class can be generated.")] = True,
    steps: Annotated[int, typer.Option(help="Generator steps (each after several critic steps).")] = GAN.steps,
    seed: Seed = GAN.seed,
) -> None:
    """Train a latent GAN that generates embeddings (gan.safetensors in the model folder)."""
    if conditional and collection is None:
        fail("a conditional GAN needs --collection for the shapes' classes (or pass --unconditional)")
    try:
        settings = LatentGanSettings(steps=steps, seed=seed)
        shapes, embeddings = _embedded(model_dir, paths)
        labels, class_names = shape_classes(shapes, read_manifest(collection)) if conditional else (None, None)
    except (ValueError, NeuralShapesError) as error:
        fail(str(error))
    with _training_bar("train-gan") as show:
        try:
            gan = train_latent_gan(embeddings, labels, class_names, settings, progress=show)
            path = save_gan(model_dir, gan)
        except NeuralShapesError as error:
            fail(str(error))
    kind = f"conditional on {len(gan.class_names)} classes" if gan.class_names else "unconditional"
    out.print(f"wrote {path}: latent GAN ({kind}) on {len(shapes)} embeddings, {gan.training['steps']} steps, "
              f"Wasserstein estimate {gan.training['final_wasserstein']:.4f}, {gan.training['seconds']} s", highlight=False, soft_wrap=True)


def train_z_gan_command(
    model_dir: Annotated[Path, typer.Option("--model", help="The model folder holding latent.safetensors; z_gan.safetensors is written there.")],
    collection: Annotated[Path | None, typer.Option(help="A collection whose manifest gives the training shapes' classes, for a latent file that keeps none.")] = None,
    steps: Annotated[int, typer.Option(help="Generator steps (each after several critic steps).")] = Z_GAN_SETTINGS.steps,
    seed: Seed = Z_GAN_SETTINGS.seed,
) -> None:
    """Train the class-conditional GAN on the latent family's z (z_gan.safetensors; resumes an interrupted run)."""
    try:
        settings = replace(Z_GAN_SETTINGS, steps=steps, seed=seed)
        latent = load_latent(model_dir)
        labels = training_labels(latent, collection)
    except (ValueError, NeuralShapesError) as error:
        fail(str(error))
    with _training_bar("train-z-gan") as show:
        try:
            z_gan = train_z_gan(latent, model_dir, labels, settings, progress=show)
        except NeuralShapesError as error:
            fail(str(error))
    record = z_gan.gan.training
    out.print(f"wrote {model_dir / Z_GAN_NAME}: GAN on the k {latent.k} latents of {record['embeddings']} shapes, "
              f"{len(z_gan.class_names)} classes, {record['steps']} steps, Wasserstein estimate {record['final_wasserstein']:.4f}, "
              f"{record['seconds']} s", highlight=False, soft_wrap=True)


def train_classifier_command(
    paths: Shapes,
    model_dir: ModelDir,
    collection: Collection,
    epochs: Annotated[int, typer.Option(help="Passes over the embeddings.")] = CLASSIFIER.epochs,
    seed: Seed = CLASSIFIER.seed,
) -> None:
    """Train a classifier of embeddings (classifier.safetensors in the model folder)."""
    try:
        settings = ClassifierSettings(epochs=epochs, seed=seed)
        shapes, embeddings = _embedded(model_dir, paths)
        labels, class_names = shape_classes(shapes, read_manifest(collection))
    except (ValueError, NeuralShapesError) as error:
        fail(str(error))
    with _training_bar("train-classifier") as show:
        try:
            classifier = train_classifier(embeddings, labels, class_names, settings, progress=show)
            path = save_classifier(model_dir, classifier)
        except NeuralShapesError as error:
            fail(str(error))
    record = classifier.training
    out.print(f"wrote {path}: classifier of {len(class_names)} classes on {len(shapes)} embeddings, train accuracy "
              f"{record['train_accuracy']:.1%}, loss {record['final_loss']:.4f}, {record['seconds']} s", highlight=False, soft_wrap=True)


def train_completion_command(
    partials: Annotated[Path, typer.Option(help="Neural shapes fitted to partial meshes (a folder of .h5, or one file).")],
    complete: Annotated[Path, typer.Option(help="Neural shapes fitted to the complete meshes (a folder of .h5, or one file).")],
    model_dir: ModelDir,
    partials_manifest: Annotated[Path, typer.Option(help="The make-partials manifest.json that says which mesh each partial mesh was cut from.")],
    epochs: Annotated[int, typer.Option(help="Passes over the pairs.")] = TRANSFER.epochs,
    seed: Seed = TRANSFER.seed,
) -> None:
    """Train the completion network: partial shape embedding -> complete shape embedding (transfer.safetensors in the model folder)."""
    try:
        settings = TransferSettings(epochs=epochs, seed=seed)
        model = load_model(model_dir)
        pairs = completion_pairs(_read_shapes([partials]), _read_shapes([complete]), read_partials_manifest(partials_manifest))
        inputs, targets = embed(model, pairs.partial), embed(model, pairs.complete)
    except (ValueError, NeuralShapesError) as error:
        fail(str(error))
    if pairs.unpaired:
        err.print(f"left out {len(pairs.unpaired)} partial shape(s) without a complete one, the first '{pairs.unpaired[0]}'", highlight=False)
    with _training_bar("train-completion") as show:
        try:
            transfer = train_transfer(inputs, targets, settings, progress=show)
            path = save_transfer(model_dir, transfer)
        except NeuralShapesError as error:
            fail(str(error))
    record = transfer.training
    out.print(f"wrote {path}: completion network on {len(pairs.partial)} pairs, mean squared error {record['mse']:.4g} "
              f"(partial embeddings unchanged: {record['identity_mse']:.4g}), {record['seconds']} s", highlight=False, soft_wrap=True)


def _read_shapes(paths: list[Path]) -> list[NeuralShape]:
    files = [file for path in paths for file in (sorted(path.glob("*.h5")) if path.is_dir() else [path])]
    if not files:
        raise NeuralShapesError(f"no neural shape files (.h5) in {', '.join(map(str, paths))}")
    return [read_shape(file) for file in files]


def _embedded(model_dir: Path, paths: list[Path]) -> tuple[list[NeuralShape], np.ndarray]:
    """The shapes and their embeddings (n, embedding_size) by the model in ``model_dir``."""
    model = load_model(model_dir)
    shapes = _read_shapes(paths)
    return shapes, embed(model, shapes)


@contextmanager
def _training_bar(command: str) -> Iterator[Callable[[TaskProgress], None]]:
    """A progress bar on stderr and the callback that moves it (a line per report when stderr is a log)."""
    with Progress(TextColumn("training"), BarColumn(), TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=err) as bar:
        task = bar.add_task("training", total=None, status="")

        def show(event: TaskProgress) -> None:
            status = f"step {event.step}/{event.total}  " + "  ".join(f"{key} {value:.4f}" for key, value in event.figures.items())
            bar.update(task, completed=event.step, total=event.total, status=status)
            if not err.is_terminal:
                err.print(f"{command}: {status}", highlight=False)

        yield show
