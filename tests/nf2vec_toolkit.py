"""A tiny but complete nf2vec tools folder for tests: six quickly fitted primitives of the default family,
an nf2vec model trained on them for a few seconds, GAN, classifier and transfer networks on their
embeddings, and a neighbour decoder with them as anchors; :func:`add_latent_family` adds a tiny latent
family and its encoder. Results decoded from it are crude shapes; tests use it for mechanics, not quality.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import trimesh

from backend.fitting.batched import FitSettings, OpenMeshes, fit_shapes
from backend.fitting.pipeline import fitted_shape
from backend.meshes.loading import load_mesh_file
from backend.nf2vec.config import Nf2vecConfig
from backend.nf2vec.decoding import DecodeSettings
from backend.nf2vec.embedding import embed
from backend.nf2vec.latent import estimate_prior, save_latent
from backend.nf2vec.latent_encoder import ENCODER_NAME, EncoderSettings, latent_encoder_data, train_latent_encoder
from backend.nf2vec.latent_training import LatentSettings, latent_training_data, train_latent
from backend.nf2vec.ops.tools import Nf2vecTools, load_tools
from backend.nf2vec.tasks.classifier import ClassifierSettings, save_classifier, train_classifier
from backend.nf2vec.tasks.latent_gan import LatentGanSettings, save_gan, train_latent_gan
from backend.nf2vec.tasks.neighbour_decoder import build_neighbour_decoder, save_neighbour_decoder
from backend.nf2vec.tasks.transfer import TransferSettings, save_transfer, train_transfer
from backend.nf2vec.training import TrainSettings, shape_samples, train_nf2vec
from backend.shapes.checkpoints import save_tensors
from backend.shapes.family_file import resolve_family
from backend.shapes.shape_file import NeuralShape, write_shape
from tests.conftest import one_torch_thread

TINY = Nf2vecConfig(encoder_hidden=(64,), embedding_size=64, decoder_hidden=64, decoder_layers=3, frequencies=4)
QUICK_TRAIN = TrainSettings(
    steps=150, shapes_per_step=6, points_per_shape=1024, learning_rate=2e-3, samples_per_shape=8192, checkpoint_every=50
)
QUICK_FIT = FitSettings(  # open meshes (a cut partial) read as solids, as nf2vec's own fits read them (DecodeSettings)
    samples=20_000,
    batch_size=2048,
    eval_every=50,
    max_steps=100,
    target_surface_error=0.0,
    eval_points=2000,
    open_meshes=OpenMeshes.SOLID,
)
QUICK_DECODE = DecodeSettings(
    resolution=32, fit=replace(QUICK_FIT, samples=8192, max_steps=50), evaluation_resolution=48
)
MESHES = {
    "sphere": lambda: trimesh.creation.icosphere(subdivisions=3, radius=0.5),
    "cube": lambda: trimesh.creation.box(extents=(1.0, 1.0, 1.0)),
    "slab": lambda: trimesh.creation.box(extents=(1.0, 0.2, 0.7)),
    "rod": lambda: trimesh.creation.cylinder(radius=0.1, height=1.0),
    "cone": lambda: trimesh.creation.cone(radius=0.5, height=1.0),
    "ring": lambda: trimesh.creation.torus(major_radius=0.5, minor_radius=0.12),
}
CLASS_OF = {"sphere": "round", "ring": "round", "cone": "round", "cube": "boxy", "slab": "boxy", "rod": "boxy"}
CLASSES = ["round", "boxy"]
# A few seconds each: mechanics only (the latent family's shapes are crude); points and samples per shape as
# nf2vec's quick training. The latent tests train longer from these: replace(QUICK_LATENT, steps=...).
QUICK_LATENT = LatentSettings(
    k=4,
    steps=60,
    shapes_per_step=6,
    points_per_shape=QUICK_TRAIN.points_per_shape,
    samples_per_shape=QUICK_TRAIN.samples_per_shape,
    subspace_learning_rate=3e-4,
    latent_learning_rate=3e-3,
    checkpoint_every=1000,
    report_every=1000,
)
QUICK_ENCODER = EncoderSettings(
    stages=(32, 32),
    steps=60,
    shapes_per_step=6,
    points_per_shape=1024,
    learning_rate=2e-3,
    samples_per_shape=QUICK_LATENT.samples_per_shape,
    checkpoint_every=1000,
    report_every=1000,
)


def write_meshes(collection: Path, makers: dict[str, Callable[[], trimesh.Trimesh]] = MESHES) -> None:
    """Make the folder ``collection`` and write each of ``makers``' meshes into it as ``NAME.ply``."""
    collection.mkdir(parents=True)
    for name, make in makers.items():
        make().export(collection / f"{name}.ply")


def write_shapes(folder: Path, shapes: list[NeuralShape]) -> None:
    """Make the folder ``folder`` and write each shape into it as ``NAME.h5`` (what the commands read)."""
    folder.mkdir(parents=True)
    for shape in shapes:
        write_shape(folder / f"{shape.name}.h5", shape)


def check_damaged_file_refused(path: Path, refused: Callable[[str], None], kind: str, other_format: str) -> None:
    """Damage the good tools-folder file at ``path`` three ways (cut in half, a pickle instead of safetensors,
    another file's ``other_format``) and call ``refused(match)`` after each: its loader must refuse it with a
    line naming the file's ``kind`` ("z GAN": "not a valid z GAN file", "not a z GAN file")."""
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    refused(f"not a valid {kind} file")
    path.write_bytes(b"\x80\x04not a pickle we would ever load")
    refused(f"not a valid {kind} file")
    save_tensors(path, {"format": other_format, "version": 1})
    refused(f"not a {kind} file")


def fit_primitives(collection: Path, names: list[str], seed: int = 0) -> list[NeuralShape]:
    """Quick fits (100 steps, default family) of meshes ``collection/NAME.ply``; metrics the file needs are stand-ins."""
    family = resolve_family("default")
    meshes = [load_mesh_file(collection / f"{name}.ply") for name in names]
    results = fit_shapes(family, meshes, replace(QUICK_FIT, seed=seed))
    shapes = [
        fitted_shape(mesh, result, family, source_name=f"{name}.ply")
        for mesh, name, result in zip(meshes, names, results)
    ]
    for shape, result in zip(shapes, results):
        shape.metrics.update(surface_error=result.surface_error_estimate, chamfer=0.0, fscore=0.0)
    return shapes


def build_toolkit(root: Path) -> tuple[Nf2vecTools, list[NeuralShape], Path]:
    """Write meshes to root/meshes, shapes to root/shapes and a complete tools folder to root/model."""
    collection, folder = root / "meshes", root / "model"
    write_meshes(collection)
    with one_torch_thread():  # tiny tensors
        shapes = fit_primitives(collection, list(MESHES))
        write_shapes(root / "shapes", shapes)
        samples = shape_samples(shapes, collection, root / "samples.h5", QUICK_TRAIN)
        model = train_nf2vec(shapes, samples, folder, resolve_family("default"), TINY, QUICK_TRAIN)
        codes = embed(model, shapes)
        labels = np.array([CLASSES.index(CLASS_OF[shape.name]) for shape in shapes])
        save_gan(
            folder,
            train_latent_gan(
                codes,
                labels,
                CLASSES,
                LatentGanSettings(noise_size=8, generator_hidden=(32,), critic_hidden=(32,), steps=20, batch_size=6),
            ),
        )
        save_classifier(folder, train_classifier(codes, labels, CLASSES, ClassifierSettings(hidden=(32,), epochs=30)))
        save_transfer(folder, train_transfer(codes[::-1].copy(), codes, TransferSettings(epochs=30)))
        save_neighbour_decoder(
            folder,
            build_neighbour_decoder(codes, [s.weights for s in shapes], [s.name for s in shapes], model.architecture),
        )
    return load_tools(folder), shapes, collection


def add_latent_family(root: Path, folder: Path, shapes: list[NeuralShape], collection: Path) -> None:
    """Train a tiny latent family of ``shapes`` (class prior round / boxy) and its encoder into ``folder``
    (latent.safetensors, latent_encoder.safetensors), so the folder serves the latent decoder."""
    family = resolve_family("default")
    cache = root / "latent-samples.h5"
    with one_torch_thread():
        latent = train_latent(
            latent_training_data(shapes, collection, cache, QUICK_LATENT),
            root / "latent-run",
            family.family_id,
            family.architecture,
            QUICK_LATENT,
        )
        labels = np.array([CLASSES.index(CLASS_OF[name]) for name in latent.names])
        latent = replace(latent, prior=estimate_prior(latent.latents, labels, CLASSES), labels=torch.from_numpy(labels))
        save_latent(folder, latent)
        data = latent_encoder_data(shapes, latent, collection, cache, QUICK_ENCODER)
        train_latent_encoder(data, latent, family, root / "encoder-run", QUICK_ENCODER)
        (root / "encoder-run" / ENCODER_NAME).rename(folder / ENCODER_NAME)
