"""The training commands. ``meta-train``: a model family (MetaSDF / Meta-SGD) on a procedural collection.
``train-nf2vec``: an nf2vec encoder + decoder on neural shapes of one family; ``train-latent``: the latent
family ``w(z) = theta + z B`` of their nets (:mod:`backend.nf2vec.latent`); ``train-latent-encoder``:
nf2vec's encoder distilled into that family's latents (:mod:`backend.nf2vec.latent_encoder`).
``train-gan``, ``train-classifier``, ``train-completion``, ``build-neighbour-decoder``: networks on the
embeddings of a trained nf2vec model, each written into the model folder; ``train-z-gan``: the GAN on the
latent family's z.

Shapes are ``.h5`` files (or folders of them); each one's source mesh is found in the collection folder
by its provenance ``source_name``; classes come from a collection manifest, completion pairs from a
partials manifest (:mod:`backend.nf2vec.tasks.task_data`). Samples caches sit in the collection folder and
checkpoints next to the output, so an interrupted run resumes. Progress goes to stderr (a bar, or a line
now and then when stderr is not a terminal), one-line summaries to stdout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from backend.cli.output import err, fail, failing_on, out, print_result, progress_bar, settings_from, shape_files
from backend.datasets.partials import read_partials_manifest
from backend.datasets.procedural import MANIFEST_NAME, read_manifest
from backend.errors import NeuralShapesError
from backend.fitting.meta_learning import MetaProgress, MetaSettings, collection_samples, meta_train
from backend.meshes.loading import find_mesh_files
from backend.nf2vec.config import Nf2vecConfig
from backend.nf2vec.embedding import embed
from backend.nf2vec.latent import load_latent
from backend.nf2vec.latent_encoder import EncoderSettings, latent_encoder_data, train_latent_encoder
from backend.nf2vec.latent_training import (
    LatentProgress,
    LatentSettings,
    check_latent_size,
    latent_training_data,
    train_latent,
)
from backend.nf2vec.model import FAMILY_NAME, load_model, read_folder_family, write_folder_family
from backend.nf2vec.tasks.classifier import ClassifierSettings, save_classifier, train_classifier
from backend.nf2vec.tasks.downstream import TaskProgress
from backend.nf2vec.tasks.latent_gan import LatentGanSettings, save_gan, train_latent_gan
from backend.nf2vec.tasks.neighbour_decoder import NeighbourSettings, build_neighbour_decoder, save_neighbour_decoder
from backend.nf2vec.tasks.task_data import completion_pairs, shape_classes
from backend.nf2vec.tasks.transfer import TransferSettings, save_transfer, train_transfer
from backend.nf2vec.tasks.z_gan import Z_GAN_NAME, Z_GAN_SETTINGS, train_z_gan, training_labels
from backend.nf2vec.training import Nf2vecProgress, TrainSettings, one_family, shape_samples, train_nf2vec
from backend.shapes.architecture import Architecture, ModelFamily
from backend.shapes.family_file import resolve_family
from backend.shapes.shape_file import NeuralShape, read_shape

# Defaults of every training command come from the settings they fill.
DEFAULTS = MetaSettings()
SETTINGS = TrainSettings()
SIZES = Nf2vecConfig()
LATENT = LatentSettings()
ENCODER = EncoderSettings()
GAN = LatentGanSettings()
CLASSIFIER = ClassifierSettings()
TRANSFER = TransferSettings()

# Options several commands share, written once.
Shapes = Annotated[
    list[Path], typer.Argument(help="Neural shape files (.h5) of the model's family, or folders of them.")
]
ModelDir = Annotated[
    Path, typer.Option("--model", help="The nf2vec model folder (from train-nf2vec); the network is written into it.")
]
Collection = Annotated[
    Path, typer.Option(help="The collection folder whose manifest gives each shape's class, by its source mesh.")
]
Seed = Annotated[int, typer.Option(help="Seed of the initial network and the draws.")]
ShapesFamily = Annotated[str, typer.Option(help="The shapes' model family: 'default' (bundled), or a FAMILY.h5.")]
SamplesPerShape = Annotated[int, typer.Option(help="Importance samples cached per source mesh.")]
SamplesCache = Annotated[
    Path | None,
    typer.Option(
        help="Samples cache file (default: samples-N-uniformF-seedS.h5 in the collection folder, which train-nf2vec, "
        "train-latent and train-latent-encoder share); meshes cached there may be absent."
    ),
]
Steps = Annotated[int, typer.Option(help="Training steps.")]
LearningRate = Annotated[float, typer.Option(help="AdamW learning rate.")]


def meta_train_command(
    collection: Annotated[Path, typer.Argument(help="A collection folder (manifest.json), e.g. from make-collection.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The family file to write (FAMILY.h5).")],
    steps: Annotated[int, typer.Option(help="Outer (meta) steps.")] = DEFAULTS.outer_steps,
    inner_steps: Annotated[int, typer.Option(help="Gradient steps of the inner loop.")] = DEFAULTS.inner_steps,
    inner_batch: Annotated[int, typer.Option(help="Points per shape per inner step.")] = DEFAULTS.inner_batch,
    meta_batch: Annotated[int, typer.Option(help="Shapes per outer step.")] = DEFAULTS.meta_batch,
    learning_rate: Annotated[float, typer.Option(help="Outer Adam learning rate.")] = DEFAULTS.outer_learning_rate,
    samples_per_shape: Annotated[
        int, typer.Option(help="Importance samples cached per mesh.")
    ] = DEFAULTS.samples_per_shape,
    first_order: Annotated[
        bool, typer.Option("--first-order", help="Treat inner gradients as constants (cheaper).")
    ] = False,
    exclude_classes: Annotated[
        str, typer.Option(help="Comma-separated classes to leave out (held out for benchmarks).")
    ] = "",
    name: Annotated[str, typer.Option(help="Family name (its id adds a hash of the weights).")] = "meta",
    seed: Annotated[int, typer.Option(help="Seed of the starting weights and of the task draws.")] = DEFAULTS.seed,
) -> None:
    """Meta-train a family: initial weights + per-parameter inner learning rates for few-step fitting."""
    with failing_on():
        manifest = read_manifest(collection)
        excluded = [c for c in exclude_classes.split(",") if c]
        unknown = sorted(set(excluded) - set(manifest.classes))
        if unknown:
            raise NeuralShapesError(
                f"unknown classes {', '.join(unknown)} (the collection has {', '.join(manifest.classes)})"
            )
        paths = manifest.mesh_paths(exclude=excluded)
        if not paths:
            raise NeuralShapesError(f"{collection}: no meshes left to train on")
        settings = settings_from(MetaSettings, locals(), outer_steps=steps, outer_learning_rate=learning_rate)
    cache = manifest.root / f"samples-{samples_per_shape}-seed{seed}.h5"
    checkpoint = output.with_name(output.name + ".checkpoint.safetensors")
    with progress_bar() as bar:
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

        with failing_on():
            samples = collection_samples(paths, cache, settings, progress=show)
            family = meta_train(samples, output, settings, name=name, checkpoint=checkpoint, progress=show)
    checkpoint.unlink(missing_ok=True)
    out.print(
        f"wrote {output}: family {family.family_id}, {family.inner_steps} inner steps, "
        f"{len(paths)} meshes, {family.provenance['train_seconds']} s of training"
    )


def train_nf2vec_command(
    paths: Annotated[list[Path], typer.Argument(help="Neural shape files (.h5) of one family, or folders of them.")],
    collection: Annotated[
        Path, typer.Option(help="Folder holding the shapes' source meshes (e.g. a make-collection folder).")
    ],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="The model folder to write (config.json + weights.safetensors).")
    ],
    steps: Steps = SETTINGS.steps,
    shapes_per_step: Annotated[int, typer.Option(help="Shapes per step.")] = SETTINGS.shapes_per_step,
    points_per_shape: Annotated[int, typer.Option(help="Query points per shape per step.")] = SETTINGS.points_per_shape,
    learning_rate: LearningRate = SETTINGS.learning_rate,
    samples_per_shape: SamplesPerShape = SETTINGS.samples_per_shape,
    samples_cache: SamplesCache = None,
    paper_sizes: Annotated[
        bool,
        typer.Option("--paper-sizes", help="The paper's sizes: encoder 512,512,1024, embedding 1024, decoder 4x512."),
    ] = False,
    encoder_hidden: Annotated[
        str, typer.Option(help="Comma-separated sizes of the encoder stages before the embedding.")
    ] = ",".join(map(str, SIZES.encoder_hidden)),
    embedding_size: Annotated[int, typer.Option(help="Embedding size.")] = SIZES.embedding_size,
    decoder_hidden: Annotated[int, typer.Option(help="Width of the decoder's hidden layers.")] = SIZES.decoder_hidden,
    decoder_layers: Annotated[
        int, typer.Option(help="Hidden layers of the decoder (at least 3).")
    ] = SIZES.decoder_layers,
    frequencies: Annotated[
        int, typer.Option(help="Frequencies of the decoder's positional encoding (the paper's: 10).")
    ] = SIZES.frequencies,
    loss: Annotated[
        str, typer.Option(help="l1 on signed distance, or bce on the clamped distance (the paper's).")
    ] = SIZES.loss,
    family: ShapesFamily = "default",
    absolute_weights: Annotated[
        bool,
        typer.Option(
            "--absolute-weights",
            help="Encode the weights themselves rather than their difference from the family's initial weights.",
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the initial networks, the draws and the samples.")] = SETTINGS.seed,
) -> None:
    """Train nf2vec: an encoder from shape weights to embeddings, with an implicit decoder."""
    with failing_on(ValueError, NeuralShapesError):
        sizes = (
            Nf2vecConfig.paper()
            if paper_sizes
            else Nf2vecConfig(
                encoder_hidden=tuple(int(size) for size in encoder_hidden.split(",") if size),
                embedding_size=embedding_size,
                decoder_hidden=decoder_hidden,
                decoder_layers=decoder_layers,
                frequencies=frequencies,
            )
        )
        config = replace(sizes, loss=loss, relative_to_family=not absolute_weights)
        settings = settings_from(TrainSettings, locals())
        shapes, chosen = _shapes_of_one_family(paths, family)
    cache = samples_cache or _default_cache(collection, samples_per_shape, settings.uniform_fraction, seed)
    with _sampling_and_training_bar("train-nf2vec", steps) as show, failing_on():
        samples = shape_samples(shapes, collection, cache, settings, progress=show)
        model = train_nf2vec(shapes, samples, output, chosen, config, settings, progress=show)
    out.print(
        f"wrote {output}: nf2vec for family {model.family_id}, {len(shapes)} shapes, {model.training['steps']} steps, "
        f"loss {model.training['final_loss']:.4f}, {model.training['seconds']} s of training"
    )


def train_latent_command(
    paths: Annotated[list[Path], typer.Argument(help="Neural shape files (.h5) of one family, or folders of them.")],
    collection: Annotated[
        Path,
        typer.Option(
            help="Folder holding the shapes' source meshes; its manifest.json, if any, gives the classes of the prior."
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "-o", "--output", help="The nf2vec model folder to write latent.safetensors (and family.h5) into."
        ),
    ],
    k: Annotated[int, typer.Option("--k", help="Latent size (needs at least k + 1 fitted shapes).")] = LATENT.k,
    steps: Steps = LATENT.steps,
    shapes_per_step: Annotated[int, typer.Option(help="Shapes per step.")] = LATENT.shapes_per_step,
    points_per_shape: Annotated[int, typer.Option(help="Sample points per shape per step.")] = LATENT.points_per_shape,
    subspace_learning_rate: Annotated[
        float, typer.Option(help="Adam learning rate of theta and the basis.")
    ] = LATENT.subspace_learning_rate,
    latent_learning_rate: Annotated[
        float, typer.Option(help="Adam learning rate of the per-shape latents.")
    ] = LATENT.latent_learning_rate,
    prior_weight: Annotated[float, typer.Option(help="Weight of |z|^2 in the loss.")] = LATENT.prior_weight,
    weight_pull: Annotated[
        float, typer.Option(help="Weight of |w(z) - w|^2 towards each shape's fitted net (0: off).")
    ] = LATENT.weight_pull,
    unfitted: Annotated[
        list[Path] | None,
        typer.Option(
            help="Meshes (files or folders, repeatable) trained on without a fitted net; their latents start at 0."
        ),
    ] = None,
    samples_per_shape: SamplesPerShape = LATENT.samples_per_shape,
    samples_cache: SamplesCache = None,
    family: ShapesFamily = "default",
    seed: Annotated[int, typer.Option(help="Seed of the draws and the samples.")] = LATENT.seed,
) -> None:
    """Train a latent family w(z) = theta + z B of the shapes' nets (an auto-decoder; resumes an interrupted run)."""
    with failing_on(ValueError, NeuralShapesError):
        settings = settings_from(LatentSettings, locals())
        shapes, chosen = _shapes_of_one_family(paths, family)
        check_latent_size(k, len(shapes))  # before sampling, which can take minutes
        if (output / FAMILY_NAME).exists():
            read_folder_family(output, chosen.family_id)  # a folder of another family: one line naming it
        manifest = read_manifest(collection) if (collection / MANIFEST_NAME).is_file() else None
        extra = find_mesh_files(unfitted or [])
    cache = samples_cache or _default_cache(collection, samples_per_shape, settings.uniform_fraction, seed)
    with _sampling_and_training_bar("train-latent", steps) as show, failing_on():
        data = latent_training_data(shapes, collection, cache, settings, extra, manifest, progress=show)
        latent = train_latent(data, output, chosen.family_id, chosen.architecture, settings, progress=show)
        write_folder_family(output, chosen)  # the folder then holds (or names) the base family its latents decode to
    record = latent.training
    classes = f", prior of {len(latent.prior.class_names)} classes" if latent.prior.class_names else ""
    print_result(
        f"wrote {output / 'latent.safetensors'}: latent family k {latent.k} of family {latent.family_id}, "
        f"{record['shapes']} shapes ({record['fitted_shapes']} fitted){classes}, {record['steps']} steps, "
        f"loss {record['final_loss']:.4f}, {record['seconds']} s of training",
    )


def train_latent_encoder_command(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="The latent family's fitted training shapes (.h5 files of one family, or folders of them)."
        ),
    ],
    model: Annotated[
        Path,
        typer.Option(
            help="The nf2vec model folder holding latent.safetensors; latent_encoder.safetensors is written there."
        ),
    ],
    collection: Annotated[Path, typer.Option(help="Folder holding the shapes' source meshes (train-latent's).")],
    refits: Annotated[
        list[Path] | None,
        typer.Option(
            help="Other fits (other seeds) of the same meshes (files or folders, repeatable); each learns its first fit's latent."
        ),
    ] = None,
    steps: Steps = ENCODER.steps,
    shapes_per_step: Annotated[int, typer.Option(help="Nets per step.")] = ENCODER.shapes_per_step,
    points_per_shape: Annotated[int, typer.Option(help="Sample points per net per step.")] = ENCODER.points_per_shape,
    learning_rate: LearningRate = ENCODER.learning_rate,
    encoder_stages: Annotated[
        str, typer.Option(help="Comma-separated sizes of the encoder stages before the head to k.")
    ] = ",".join(map(str, ENCODER.stages)),
    yaw_fraction: Annotated[
        float, typer.Option(help="Fraction of the nets drawn that are turned by a random yaw.")
    ] = ENCODER.yaw_fraction,
    samples_per_shape: SamplesPerShape = ENCODER.samples_per_shape,
    samples_cache: SamplesCache = None,
    family: ShapesFamily = "default",
    seed: Annotated[
        int, typer.Option(help="Seed of the encoder's initial weights, the draws and the samples.")
    ] = ENCODER.seed,
) -> None:
    """Distil nf2vec's weight encoder into the latent family: weights -> z (resumes an interrupted run)."""
    with failing_on(ValueError, NeuralShapesError):
        settings = settings_from(
            EncoderSettings, locals(), stages=tuple(int(size) for size in encoder_stages.split(",") if size)
        )
        if not settings.stages:
            raise ValueError("--encoder-stages needs at least one size")
        shapes, chosen = _shapes_of_one_family(paths, family)
        refit_shapes = _shapes_of_one_family(refits, family)[0] if refits else []
        latent = load_latent(model, chosen.family_id)
    cache = samples_cache or _default_cache(collection, samples_per_shape, settings.uniform_fraction, seed)
    with _sampling_and_training_bar("train-latent-encoder", steps) as show, failing_on():
        data = latent_encoder_data(shapes, latent, collection, cache, settings, refit_shapes, progress=show)
        encoder = train_latent_encoder(data, latent, chosen, model, settings, progress=show)
    record = encoder.training
    inputs = record["inputs"]
    print_result(
        f"wrote {model / 'latent_encoder.safetensors'}: encoder to the k {encoder.k} latents of family {encoder.family_id}, "
        f"{record['shapes']} shapes ({inputs['fitted']} fitted, {inputs['refits']} re-fits, {inputs['decoded']} decoded nets), "
        f"{record['steps']} steps, "
        + ("" if record["final_loss"] is None else f"field L1 {record['final_loss']:.4f}, ")
        + f"{record['seconds']} s of training",
    )


def _shapes_of_one_family(paths: list[Path], family: str) -> tuple[list[NeuralShape], ModelFamily]:
    """The shape files (folders expanded to their .h5 files) and their family, checked to be ``family``."""
    shapes = [read_shape(file) for file in shape_files(paths)]
    chosen = resolve_family(family, shapes[0].architecture if shapes else Architecture())
    one_family(shapes, chosen)
    return shapes, chosen


def _default_cache(collection: Path, samples_per_shape: int, uniform_fraction: float, seed: int) -> Path:
    """The samples cache train-nf2vec and train-latent share in the collection folder."""
    return collection / f"samples-{samples_per_shape}-uniform{uniform_fraction:g}-seed{seed}.h5"


@contextmanager
def _sampling_and_training_bar(command: str, steps: int) -> Iterator[Callable[[Nf2vecProgress | LatentProgress], None]]:
    """Bars for sampling meshes and training on stderr, and the callback that moves them (a line per report in a log)."""
    with progress_bar() as bar:
        sampling = bar.add_task("sampling", total=None, status="")
        training = bar.add_task("training", total=steps, status="")

        def show(event: Nf2vecProgress | LatentProgress) -> None:
            task = sampling if event.stage == "sampling" else training
            status = (
                f"{event.step}/{event.total} meshes"
                if event.stage == "sampling"
                else f"step {event.step}  loss {event.loss:.4f}"
            )
            bar.update(task, completed=event.step, total=event.total, status=status)
            if not err.is_terminal and (event.stage == "training" or event.step == event.total):
                err.print(f"{command}: {event.stage} {status}", highlight=False)

        yield show


def build_neighbour_decoder_command(
    paths: Shapes,
    model_dir: ModelDir,
    k: Annotated[int, typer.Option("-k", help="Anchors blended per decoded embedding.")] = NeighbourSettings.k,
) -> None:
    """Keep the shapes as anchors of the neighbour decoder (neighbours.safetensors in the model folder)."""
    with failing_on(ValueError, NeuralShapesError):
        shapes, embeddings = _embedded(model_dir, paths)
        decoder = build_neighbour_decoder(
            embeddings,
            [s.weights for s in shapes],
            [s.name for s in shapes],
            shapes[0].architecture,
            NeighbourSettings(k=k),
        )
        path = save_neighbour_decoder(model_dir, decoder)
    print_result(
        f"wrote {path}: neighbour decoder over {len(shapes)} anchors, k {k}, "
        f"temperature {decoder.training['temperature']:.4g}",
    )


def train_gan_command(
    paths: Shapes,
    model_dir: ModelDir,
    collection: Annotated[
        Path | None,
        typer.Option(help="The collection folder whose manifest gives each shape's class (needed with --conditional)."),
    ] = None,
    conditional: Annotated[
        bool,
        typer.Option("--conditional/--unconditional", help="Condition on the class, so one class can be generated."),
    ] = True,
    steps: Annotated[int, typer.Option(help="Generator steps (each after several critic steps).")] = GAN.steps,
    seed: Seed = GAN.seed,
) -> None:
    """Train a latent GAN that generates embeddings (gan.safetensors in the model folder)."""
    if conditional and collection is None:
        fail("a conditional GAN needs --collection for the shapes' classes (or pass --unconditional)")
    with failing_on(ValueError, NeuralShapesError):
        settings = LatentGanSettings(steps=steps, seed=seed)
        shapes, embeddings = _embedded(model_dir, paths)
        labels, class_names = shape_classes(shapes, read_manifest(collection)) if conditional else (None, None)
    with _training_bar("train-gan") as show, failing_on():
        gan = train_latent_gan(embeddings, labels, class_names, settings, progress=show)
        path = save_gan(model_dir, gan)
    kind = f"conditional on {len(gan.class_names)} classes" if gan.class_names else "unconditional"
    print_result(
        f"wrote {path}: latent GAN ({kind}) on {len(shapes)} embeddings, {gan.training['steps']} steps, "
        f"Wasserstein estimate {gan.training['final_wasserstein']:.4f}, {gan.training['seconds']} s",
    )


def train_z_gan_command(
    model_dir: Annotated[
        Path,
        typer.Option(
            "--model", help="The model folder holding latent.safetensors; z_gan.safetensors is written there."
        ),
    ],
    collection: Annotated[
        Path | None,
        typer.Option(
            help="A collection whose manifest gives the training shapes' classes, for a latent file that keeps none."
        ),
    ] = None,
    steps: Annotated[
        int, typer.Option(help="Generator steps (each after several critic steps).")
    ] = Z_GAN_SETTINGS.steps,
    seed: Seed = Z_GAN_SETTINGS.seed,
) -> None:
    """Train the class-conditional GAN on the latent family's z (z_gan.safetensors; resumes an interrupted run)."""
    with failing_on(ValueError, NeuralShapesError):
        settings = replace(Z_GAN_SETTINGS, steps=steps, seed=seed)
        latent = load_latent(model_dir)
        labels = training_labels(latent, collection)
    with _training_bar("train-z-gan") as show, failing_on():
        z_gan = train_z_gan(latent, model_dir, labels, settings, progress=show)
    record = z_gan.gan.training
    print_result(
        f"wrote {model_dir / Z_GAN_NAME}: GAN on the k {latent.k} latents of {record['embeddings']} shapes, "
        f"{len(z_gan.class_names)} classes, {record['steps']} steps, Wasserstein estimate {record['final_wasserstein']:.4f}, "
        f"{record['seconds']} s",
    )


def train_classifier_command(
    paths: Shapes,
    model_dir: ModelDir,
    collection: Collection,
    epochs: Annotated[int, typer.Option(help="Passes over the embeddings.")] = CLASSIFIER.epochs,
    seed: Seed = CLASSIFIER.seed,
) -> None:
    """Train a classifier of embeddings (classifier.safetensors in the model folder)."""
    with failing_on(ValueError, NeuralShapesError):
        settings = ClassifierSettings(epochs=epochs, seed=seed)
        shapes, embeddings = _embedded(model_dir, paths)
        labels, class_names = shape_classes(shapes, read_manifest(collection))
    with _training_bar("train-classifier") as show, failing_on():
        classifier = train_classifier(embeddings, labels, class_names, settings, progress=show)
        path = save_classifier(model_dir, classifier)
    record = classifier.training
    print_result(
        f"wrote {path}: classifier of {len(class_names)} classes on {len(shapes)} embeddings, train accuracy "
        f"{record['train_accuracy']:.1%}, loss {record['final_loss']:.4f}, {record['seconds']} s",
    )


def train_completion_command(
    partials: Annotated[
        Path, typer.Option(help="Neural shapes fitted to partial meshes (a folder of .h5, or one file).")
    ],
    complete: Annotated[
        Path, typer.Option(help="Neural shapes fitted to the complete meshes (a folder of .h5, or one file).")
    ],
    model_dir: ModelDir,
    partials_manifest: Annotated[
        Path, typer.Option(help="The make-partials manifest.json that says which mesh each partial mesh was cut from.")
    ],
    epochs: Annotated[int, typer.Option(help="Passes over the pairs.")] = TRANSFER.epochs,
    seed: Seed = TRANSFER.seed,
) -> None:
    """Train the completion network: partial shape embedding -> complete shape embedding (transfer.safetensors in the model folder)."""
    with failing_on(ValueError, NeuralShapesError):
        settings = TransferSettings(epochs=epochs, seed=seed)
        model = load_model(model_dir)
        pairs = completion_pairs(
            _read_shapes([partials]), _read_shapes([complete]), read_partials_manifest(partials_manifest)
        )
        inputs, targets = embed(model, pairs.partial), embed(model, pairs.complete)
    if pairs.unpaired:
        err.print(
            f"left out {len(pairs.unpaired)} partial shape(s) without a complete one, the first '{pairs.unpaired[0]}'",
            highlight=False,
        )
    with _training_bar("train-completion") as show, failing_on():
        transfer = train_transfer(inputs, targets, settings, progress=show)
        path = save_transfer(model_dir, transfer)
    record = transfer.training
    print_result(
        f"wrote {path}: completion network on {len(pairs.partial)} pairs, mean squared error {record['mse']:.4g} "
        f"(partial embeddings unchanged: {record['identity_mse']:.4g}), {record['seconds']} s",
    )


def _read_shapes(paths: list[Path]) -> list[NeuralShape]:
    return [read_shape(file) for file in shape_files(paths)]


def _embedded(model_dir: Path, paths: list[Path]) -> tuple[list[NeuralShape], np.ndarray]:
    """The shapes and their embeddings (n, embedding_size) by the model in ``model_dir``."""
    model = load_model(model_dir)
    shapes = _read_shapes(paths)
    return shapes, embed(model, shapes)


@contextmanager
def _training_bar(command: str) -> Iterator[Callable[[TaskProgress], None]]:
    """A progress bar on stderr and the callback that moves it (a line per report when stderr is a log)."""
    with progress_bar("training") as bar:
        task = bar.add_task("training", total=None, status="")

        def show(event: TaskProgress) -> None:
            status = f"step {event.step}/{event.total}  " + "  ".join(
                f"{key} {value:.4f}" for key, value in event.figures.items()
            )
            bar.update(task, completed=event.step, total=event.total, status=status)
            if not err.is_terminal:
                err.print(f"{command}: {status}", highlight=False)

        yield show
