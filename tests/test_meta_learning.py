"""Meta-learning (backend.fitting.meta_learning): held-out inner-loop loss falls below the random init's, an
interrupted run resumes to the same family, corrupt checkpoints are refused, and fitting from a
meta-learned family takes fewer steps than from the random init."""

from __future__ import annotations

import math
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch
import trimesh

from backend.errors import Cancelled, NeuralShapesError
from backend.fitting.batched import FitSettings, fit_shapes
from backend.fitting.meta_learning import (
    CollectionSamples,
    MetaSettings,
    collection_samples,
    family_held_out_loss,
    meta_train,
)
from backend.meshes.loading import load_mesh_file
from backend.shapes.architecture import random_family
from backend.shapes.family_file import DEFAULT_FAMILY_FILE, read_family
from tests.conftest import SAMPLES

pytestmark = pytest.mark.slow

TINY = MetaSettings(
    outer_steps=60,
    meta_batch=4,
    samples_per_shape=8192,
    held_out_shapes=4,
    eval_every=20,
    inner_batch=1024,
    target_batch=2048,
)


@pytest.fixture(scope="module")
def tiny_collection(tmp_path_factory) -> CollectionSamples:
    """16 boxes, ellipsoids and tori of random proportions and orientations; the last 4 are held out."""
    folder = tmp_path_factory.mktemp("tiny_collection")
    rng = np.random.default_rng(0)
    paths = []
    for index in range(16):
        if index % 3 == 0:
            mesh = trimesh.creation.box(extents=rng.uniform(0.3, 1.0, 3))
        elif index % 3 == 1:
            mesh = trimesh.creation.icosphere(3)
            mesh.apply_scale(rng.uniform(0.4, 1.0, 3))
        else:
            mesh = trimesh.creation.torus(1.0, rng.uniform(0.2, 0.5), major_sections=48, minor_sections=16)
        mesh.apply_transform(trimesh.transformations.random_rotation_matrix(rng.random(3)))
        paths.append(folder / f"shape_{index:02d}.ply")
        mesh.export(paths[-1])
    return collection_samples(paths, folder / "samples.h5", TINY)


def test_samples_are_cached_and_resumed(tiny_collection, tmp_path):
    assert tiny_collection.points.shape == (16, 8192, 3) and tiny_collection.sdf.shape == (16, 8192)
    assert torch.isfinite(tiny_collection.points).all() and (tiny_collection.sdf < 0).any()


def test_meta_training_lowers_held_out_inner_loop_loss(tiny_collection, tmp_path):
    family = meta_train(tiny_collection, tmp_path / "family.h5", TINY)
    held_out = CollectionSamples(tiny_collection.names[-4:], tiny_collection.points[-4:], tiny_collection.sdf[-4:])
    meta_loss = family_held_out_loss(family, held_out, TINY)
    random_loss = family_held_out_loss(random_family(), held_out, TINY, inner_rate=TINY.initial_inner_rate)
    assert meta_loss < 0.6 * random_loss, (meta_loss, random_loss)
    stored = read_family(tmp_path / "family.h5")
    assert stored.family_id == family.family_id and stored.inner_steps == TINY.inner_steps and stored.is_meta_learned


def test_interrupted_training_resumes_to_the_same_family(tiny_collection, tmp_path):
    settings = replace(TINY, outer_steps=30, eval_every=10)
    whole = meta_train(tiny_collection, tmp_path / "whole.h5", settings)
    checkpoint, cancel = tmp_path / "run.checkpoint.safetensors", threading.Event()

    def stop_at_20(event):
        if event.step == 20:
            cancel.set()

    with pytest.raises(Cancelled):
        meta_train(
            tiny_collection,
            tmp_path / "resumed.h5",
            settings,
            checkpoint=checkpoint,
            progress=stop_at_20,
            cancel=cancel,
        )
    assert checkpoint.exists() and not (tmp_path / "resumed.h5").exists()
    steps = []
    resumed = meta_train(
        tiny_collection,
        tmp_path / "resumed.h5",
        settings,
        checkpoint=checkpoint,
        progress=lambda e: steps.append(e.step),
    )
    assert steps[0] == 21
    for (a, b), (c, d) in zip(whole.initial_weights, resumed.initial_weights):
        np.testing.assert_allclose(a, c, atol=1e-6)
        np.testing.assert_allclose(b, d, atol=1e-6)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04garbage"])
def test_corrupt_checkpoint_is_refused(tiny_collection, tmp_path, content):
    checkpoint = tmp_path / "bad.checkpoint.safetensors"
    checkpoint.write_bytes(content)
    with pytest.raises(NeuralShapesError, match="not a valid meta-training checkpoint"):
        meta_train(tiny_collection, tmp_path / "family.h5", TINY, checkpoint=checkpoint)


def test_checkpoint_of_other_settings_is_refused(tiny_collection, tmp_path):
    checkpoint, cancel = tmp_path / "run.checkpoint.safetensors", threading.Event()
    settings = replace(TINY, outer_steps=20, eval_every=10)
    with pytest.raises(Cancelled):
        meta_train(
            tiny_collection,
            tmp_path / "f.h5",
            settings,
            checkpoint=checkpoint,
            progress=lambda e: e.step == 10 and cancel.set(),
            cancel=cancel,
        )
    with pytest.raises(NeuralShapesError, match="other settings"):
        meta_train(tiny_collection, tmp_path / "f.h5", replace(settings, meta_batch=2), checkpoint=checkpoint)


def test_bundled_family_fits_a_held_out_shape_in_fewer_steps_than_random_init():
    """The mug is not in the training collection; both fits use the same samples and Adam settings."""
    family = read_family(DEFAULT_FAMILY_FILE)
    mesh = load_mesh_file(SAMPLES / "mug.obj")
    settings = FitSettings(samples=200_000, eval_every=25, max_steps=3000, target_surface_error=0.006)
    settings = replace(
        settings, target_tail_error=math.inf, target_fscore=0.0, target_chamfer=math.inf
    )  # surface error only, as the paper stops
    [meta] = fit_shapes(family, [mesh], settings)
    [random] = fit_shapes(random_family(), [mesh], settings)
    assert meta.stop_reason == "target reached"
    assert meta.steps < 0.7 * random.steps, (meta.steps, random.steps)
