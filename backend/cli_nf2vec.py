"""The ``train-nf2vec`` command: train an nf2vec encoder + decoder on neural shapes of one family;
``train-latent``: train the latent family ``w(z) = theta + z B`` of their nets (:mod:`backend.nf2vec.latent`);
and ``train-latent-encoder``: distil nf2vec's encoder into that family's latents (:mod:`backend.nf2vec.latent_encoder`).

``backend.cli`` registers them. Shapes are ``.h5`` files (or folders of them); each one's source mesh is
found in the collection folder by its provenance ``source_name``. The samples cache sits in the
collection folder (shared with ``meta-train``) and the checkpoint in the model folder, so an interrupted
run resumes. Progress goes to stderr.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from backend.cli_output import err, fail, out
from backend.collection import MANIFEST_NAME, read_manifest
from backend.errors import NeuralShapesError
from backend.family_file import read_family, resolve_family, write_family
from backend.mesh_loading import find_mesh_files
from backend.network import Architecture, ModelFamily
from backend.nf2vec.config import Nf2vecConfig
from backend.nf2vec.latent import load_latent
from backend.nf2vec.latent_encoder import EncoderSettings, latent_encoder_data, train_latent_encoder
from backend.nf2vec.latent_training import (
    LatentProgress,
    LatentSettings,
    check_latent_size,
    latent_training_data,
    train_latent,
)
from backend.nf2vec.model import FAMILY_NAME
from backend.nf2vec.training import Nf2vecProgress, TrainSettings, one_family, shape_samples, train_nf2vec
from backend.shape_file import NeuralShape, read_shape

SETTINGS = TrainSettings()
SIZES = Nf2vecConfig()
LATENT = LatentSettings()
ENCODER = EncoderSettings()


def train_nf2vec_command(
    paths: Annotated[list[Path], typer.Argument(help="Neural shape files (.h5) of one family, or folders of them.")],
    collection: Annotated[Path, typer.Option(help="Folder holding the shapes' source meshes (e.g. a make-collection folder).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The model folder to write (config.json + weights.safetensors).")],
    steps: Annotated[int, typer.Option(help="Training steps.")] = SETTINGS.steps,
    shapes_per_step: Annotated[int, typer.Option(help="Shapes per step.")] = SETTINGS.shapes_per_step,
    points_per_shape: Annotated[int, typer.Option(help="Query points per shape per step.")] = SETTINGS.points_per_shape,
    learning_rate: Annotated[float, typer.Option(help="AdamW learning rate.")] = SETTINGS.learning_rate,
    samples_per_shape: Annotated[int, typer.Option(help="Importance samples cached per source mesh.")] = SETTINGS.samples_per_shape,
    samples_cache: Annotated[Path | None, typer.Option(help="Samples cache file (default: samples-N-uniformF-seedS.h5 in the collection folder); meshes cached there may be absent.")] = None,
    paper_sizes: Annotated[bool, typer.Option("--paper-sizes", help="The paper's sizes: encoder 512,512,1024, embedding 1024, decoder 4x512.")] = False,
    encoder_hidden: Annotated[str, typer.Option(help="Comma-separated sizes of the encoder stages before the embedding.")] = ",".join(map(str, SIZES.encoder_hidden)),
    embedding_size: Annotated[int, typer.Option(help="Embedding size.")] = SIZES.embedding_size,
    decoder_hidden: Annotated[int, typer.Option(help="Width of the decoder's hidden layers.")] = SIZES.decoder_hidden,
    decoder_layers: Annotated[int, typer.Option(help="Hidden layers of the decoder (at least 3).")] = SIZES.decoder_layers,
    frequencies: Annotated[int, typer.Option(help="Frequencies of the decoder's positional encoding (the paper's: 10).")] = SIZES.frequencies,
    loss: Annotated[str, typer.Option(help="l1 on signed distance, or bce on the clamped distance (the paper's).")] = SIZES.loss,
    family: Annotated[str, typer.Option(help="The shapes' model family: 'default' (bundled), or a FAMILY.h5.")] = "default",
    absolute_weights: Annotated[bool, typer.Option("--absolute-weights", help="Encode the weights themselves rather than their difference from the family's initial weights.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the initial networks, the draws and the samples.")] = SETTINGS.seed,
) -> None:
    """Train nf2vec: an encoder from shape weights to embeddings, with an implicit decoder."""
    try:
        sizes = Nf2vecConfig.paper() if paper_sizes else Nf2vecConfig(
            encoder_hidden=tuple(int(size) for size in encoder_hidden.split(",") if size),
            embedding_size=embedding_size, decoder_hidden=decoder_hidden, decoder_layers=decoder_layers,
            frequencies=frequencies,
        )
        config = replace(sizes, loss=loss, relative_to_family=not absolute_weights)
        settings = TrainSettings(steps=steps, shapes_per_step=shapes_per_step, points_per_shape=points_per_shape,
                                 learning_rate=learning_rate, samples_per_shape=samples_per_shape, seed=seed)
        shapes, chosen = _shapes_of_one_family(paths, family)
    except (ValueError, NeuralShapesError) as error:
        fail(str(error))
    cache = samples_cache or _default_cache(collection, samples_per_shape, settings.uniform_fraction, seed)
    with _sampling_and_training_bar("train-nf2vec", steps) as show:
        try:
            samples = shape_samples(shapes, collection, cache, settings, progress=show)
            model = train_nf2vec(shapes, samples, output, chosen, config, settings, progress=show)
        except NeuralShapesError as error:
            fail(str(error))
    out.print(f"wrote {output}: nf2vec for family {model.family_id}, {len(shapes)} shapes, {model.training['steps']} steps, "
              f"loss {model.training['final_loss']:.4f}, {model.training['seconds']} s of training")


def train_latent_command(
    paths: Annotated[list[Path], typer.Argument(help="Neural shape files (.h5) of one family, or folders of them.")],
    collection: Annotated[Path, typer.Option(help="Folder holding the shapes' source meshes; its manifest.json, if any, gives the classes of the prior.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The nf2vec model folder to write latent.safetensors (and family.h5) into.")],
    k: Annotated[int, typer.Option("--k", help="Latent size (needs at least k + 1 fitted shapes).")] = LATENT.k,
    steps: Annotated[int, typer.Option(help="Training steps.")] = LATENT.steps,
    shapes_per_step: Annotated[int, typer.Option(help="Shapes per step.")] = LATENT.shapes_per_step,
    points_per_shape: Annotated[int, typer.Option(help="Sample points per shape per step.")] = LATENT.points_per_shape,
    subspace_learning_rate: Annotated[float, typer.Option(help="Adam learning rate of theta and the basis.")] = LATENT.subspace_learning_rate,
    latent_learning_rate: Annotated[float, typer.Option(help="Adam learning rate of the per-shape latents.")] = LATENT.latent_learning_rate,
    prior_weight: Annotated[float, typer.Option(help="Weight of |z|^2 in the loss.")] = LATENT.prior_weight,
    weight_pull: Annotated[float, typer.Option(help="Weight of |w(z) - w|^2 towards each shape's fitted net (0: off).")] = LATENT.weight_pull,
    unfitted: Annotated[list[Path] | None, typer.Option(help="Meshes (files or folders, repeatable) trained on without a fitted net; their latents start at 0.")] = None,
    samples_per_shape: Annotated[int, typer.Option(help="Importance samples cached per source mesh.")] = LATENT.samples_per_shape,
    samples_cache: Annotated[Path | None, typer.Option(help="Samples cache file (default: the one train-nf2vec uses in the collection folder).")] = None,
    family: Annotated[str, typer.Option(help="The shapes' model family: 'default' (bundled), or a FAMILY.h5.")] = "default",
    seed: Annotated[int, typer.Option(help="Seed of the draws and the samples.")] = LATENT.seed,
) -> None:
    """Train a latent family w(z) = theta + z B of the shapes' nets (an auto-decoder; resumes an interrupted run)."""
    try:
        settings = LatentSettings(k=k, steps=steps, shapes_per_step=shapes_per_step, points_per_shape=points_per_shape,
                                  subspace_learning_rate=subspace_learning_rate, latent_learning_rate=latent_learning_rate,
                                  prior_weight=prior_weight, weight_pull=weight_pull, samples_per_shape=samples_per_shape, seed=seed)
        shapes, chosen = _shapes_of_one_family(paths, family)
        check_latent_size(k, len(shapes))  # before sampling, which can take minutes
        family_file = output / FAMILY_NAME
        if family_file.exists() and read_family(family_file).family_id != chosen.family_id:
            raise NeuralShapesError(f"{family_file}: the model folder is of family {read_family(family_file).family_id}, "
                                    f"the shapes are of {chosen.family_id}")
        manifest = read_manifest(collection) if (collection / MANIFEST_NAME).is_file() else None
        extra = find_mesh_files(unfitted or [])
    except (ValueError, NeuralShapesError) as error:
        fail(str(error))
    cache = samples_cache or _default_cache(collection, samples_per_shape, settings.uniform_fraction, seed)
    with _sampling_and_training_bar("train-latent", steps) as show:
        try:
            data = latent_training_data(shapes, collection, cache, settings, extra, manifest, progress=show)
            latent = train_latent(data, output, chosen.family_id, chosen.architecture, settings, progress=show)
            if not family_file.exists():
                write_family(family_file, chosen)  # the folder then holds the base family its latents decode to
        except NeuralShapesError as error:
            fail(str(error))
    record = latent.training
    classes = f", prior of {len(latent.prior.class_names)} classes" if latent.prior.class_names else ""
    out.print(f"wrote {output / 'latent.safetensors'}: latent family k {latent.k} of family {latent.family_id}, "
              f"{record['shapes']} shapes ({record['fitted_shapes']} fitted){classes}, {record['steps']} steps, "
              f"loss {record['final_loss']:.4f}, {record['seconds']} s of training", highlight=False, soft_wrap=True)


def train_latent_encoder_command(
    paths: Annotated[list[Path], typer.Argument(help="The latent family's fitted training shapes (.h5 files of one family, or folders of them).")],
    model: Annotated[Path, typer.Option(help="The nf2vec model folder holding latent.safetensors; latent_encoder.safetensors is written there.")],
    collection: Annotated[Path, typer.Option(help="Folder holding the shapes' source meshes (train-latent's).")],
    refits: Annotated[list[Path] | None, typer.Option(help="Other fits (other seeds) of the same meshes (files or folders, repeatable); each learns its first fit's latent.")] = None,
    steps: Annotated[int, typer.Option(help="Training steps.")] = ENCODER.steps,
    shapes_per_step: Annotated[int, typer.Option(help="Nets per step.")] = ENCODER.shapes_per_step,
    points_per_shape: Annotated[int, typer.Option(help="Sample points per net per step.")] = ENCODER.points_per_shape,
    learning_rate: Annotated[float, typer.Option(help="AdamW learning rate.")] = ENCODER.learning_rate,
    encoder_stages: Annotated[str, typer.Option(help="Comma-separated sizes of the encoder stages before the head to k.")] = ",".join(map(str, ENCODER.stages)),
    yaw_fraction: Annotated[float, typer.Option(help="Fraction of the nets drawn that are turned by a random yaw.")] = ENCODER.yaw_fraction,
    samples_per_shape: Annotated[int, typer.Option(help="Importance samples cached per source mesh.")] = ENCODER.samples_per_shape,
    samples_cache: Annotated[Path | None, typer.Option(help="Samples cache file (default: the one train-latent uses in the collection folder).")] = None,
    family: Annotated[str, typer.Option(help="The shapes' model family: 'default' (bundled), or a FAMILY.h5.")] = "default",
    seed: Annotated[int, typer.Option(help="Seed of the encoder's initial weights, the draws and the samples.")] = ENCODER.seed,
) -> None:
    """Distil nf2vec's weight encoder into the latent family: weights -> z (resumes an interrupted run)."""
    try:
        settings = EncoderSettings(stages=tuple(int(size) for size in encoder_stages.split(",") if size), steps=steps,
                                   shapes_per_step=shapes_per_step, points_per_shape=points_per_shape, learning_rate=learning_rate,
                                   yaw_fraction=yaw_fraction, samples_per_shape=samples_per_shape, seed=seed)
        if not settings.stages:
            raise ValueError("--encoder-stages needs at least one size")
        shapes, chosen = _shapes_of_one_family(paths, family)
        refit_shapes = _shapes_of_one_family(refits, family)[0] if refits else []
        latent = load_latent(model, chosen.family_id)
    except (ValueError, NeuralShapesError) as error:
        fail(str(error))
    cache = samples_cache or _default_cache(collection, samples_per_shape, settings.uniform_fraction, seed)
    with _sampling_and_training_bar("train-latent-encoder", steps) as show:
        try:
            data = latent_encoder_data(shapes, latent, collection, cache, settings, refit_shapes, progress=show)
            encoder = train_latent_encoder(data, latent, chosen, model, settings, progress=show)
        except NeuralShapesError as error:
            fail(str(error))
    record = encoder.training
    inputs = record["inputs"]
    out.print(f"wrote {model / 'latent_encoder.safetensors'}: encoder to the k {encoder.k} latents of family {encoder.family_id}, "
              f"{record['shapes']} shapes ({inputs['fitted']} fitted, {inputs['refits']} re-fits, {inputs['decoded']} decoded nets), "
              f"{record['steps']} steps, field L1 {record['final_loss']:.4f}, {record['seconds']} s of training",
              highlight=False, soft_wrap=True)


def _shapes_of_one_family(paths: list[Path], family: str) -> tuple[list[NeuralShape], ModelFamily]:
    """The shape files (folders expanded to their .h5 files) and their family, checked to be ``family``."""
    files = [file for path in paths for file in (sorted(path.glob("*.h5")) if path.is_dir() else [path])]
    shapes = [read_shape(file) for file in files]
    chosen = resolve_family(family, shapes[0].architecture if shapes else Architecture())
    one_family(shapes, chosen)
    return shapes, chosen


def _default_cache(collection: Path, samples_per_shape: int, uniform_fraction: float, seed: int) -> Path:
    """The samples cache train-nf2vec and train-latent share in the collection folder."""
    return collection / f"samples-{samples_per_shape}-uniform{uniform_fraction:g}-seed{seed}.h5"


@contextmanager
def _sampling_and_training_bar(command: str, steps: int) -> Iterator[Callable[[Nf2vecProgress | LatentProgress], None]]:
    """Bars for sampling meshes and training on stderr, and the callback that moves them (a line per report in a log)."""
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=err) as bar:
        sampling = bar.add_task("sampling", total=None, status="")
        training = bar.add_task("training", total=steps, status="")

        def show(event: Nf2vecProgress | LatentProgress) -> None:
            task = sampling if event.stage == "sampling" else training
            status = f"{event.step}/{event.total} meshes" if event.stage == "sampling" else f"step {event.step}  loss {event.loss:.4f}"
            bar.update(task, completed=event.step, total=event.total, status=status)
            if not err.is_terminal and (event.stage == "training" or event.step == event.total):
                err.print(f"{command}: {event.stage} {status}", highlight=False)

        yield show
