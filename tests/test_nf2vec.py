"""nf2vec: weight matrices, deterministic embeddings, training on quickly fitted shapes, neighbours,
refusals (mixed families, corrupt checkpoints and models) and the ``train-nf2vec`` command."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from backend.errors import NeuralShapesError
from backend.nf2vec.decoder import sdf_loss, to_signed_distance
from backend.nf2vec.embedding import embed, similar
from backend.nf2vec.encoder import matrix_rows, weight_matrix
from backend.nf2vec.model import WEIGHTS_NAME, load_model, new_model
from backend.nf2vec.training import CHECKPOINT_NAME, decoder_loss, shape_samples, train_nf2vec
from backend.shapes.architecture import random_family
from backend.shapes.checkpoints import save_tensors
from backend.shapes.family_file import resolve_family
from backend.shapes.shape_file import read_shape, write_shape
from tests.conftest import run_cli
from tests.nf2vec_toolkit import MESHES, QUICK_TRAIN, TINY, fit_primitives, write_meshes, write_shapes

FAMILY = resolve_family("default")


pytestmark = [pytest.mark.usefixtures("single_torch_thread"), pytest.mark.slow]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A folder of six meshes, their quick fits (written as .h5) and a second fit of the ring (other seed)."""
    root = tmp_path_factory.mktemp("nf2vec")
    collection, shapes_dir = root / "meshes", root / "shapes"
    write_meshes(collection)
    shapes = fit_primitives(collection, list(MESHES), seed=0)
    write_shapes(shapes_dir, shapes)
    [refit] = fit_primitives(collection, ["ring"], seed=1)
    return root, collection, shapes_dir, shapes, refit


@pytest.fixture(scope="module")
def trained(fitted):
    root, collection, _, shapes, _ = fitted
    samples = shape_samples(shapes, collection, root / "samples.h5", QUICK_TRAIN)
    model = train_nf2vec(shapes, samples, root / "model", FAMILY, TINY, QUICK_TRAIN)
    return model, samples


def test_weight_matrix_follows_the_papers_layout():
    family = random_family(seed=3)
    matrix = weight_matrix(family.initial_weights, width=32)
    assert matrix.shape == (matrix_rows(family.architecture), 32) == (268, 32)
    (w0, b0), (w1, _) = family.initial_weights[:2]
    np.testing.assert_array_equal(matrix[:3], w0.T)  # one row per input neuron: its outgoing weights
    np.testing.assert_array_equal(matrix[3], b0)
    np.testing.assert_array_equal(matrix[4:36], w1.T)
    w_out, b_out = family.initial_weights[-1]
    np.testing.assert_array_equal(matrix[-33:-1, 0], w_out[0])
    assert matrix[-1, 0] == b_out[0] and not matrix[-33:, 1:].any()  # output layer zero-padded


def test_bce_outputs_read_back_as_clamped_signed_distances():
    config = replace(TINY, loss="bce", bce_clamp=0.1)
    sdf = torch.tensor([[-0.5, -0.05, 0.0, 0.02, 0.3]])
    target = (sdf.clamp(-0.1, 0.1) / 0.1 + 1) / 2
    logits = torch.logit(target.clamp(1e-6, 1 - 1e-6))
    torch.testing.assert_close(to_signed_distance(logits, config), sdf.clamp(-0.1, 0.1), atol=1e-5, rtol=0)
    assert sdf_loss(logits, sdf, config) < sdf_loss(-logits, sdf, config)  # sign errors cost
    assert (
        to_signed_distance(sdf, TINY) is sdf and float(sdf_loss(sdf, sdf, TINY)) == 0.0
    )  # l1: the output is the distance


def test_embeddings_are_deterministic_and_independent_of_the_batch(fitted):
    shapes = fitted[3]
    model = new_model(TINY, FAMILY)
    model.encoder.train()
    model.encoder(torch.randn(4, 268, 32))  # move the batch-norm running statistics away from their start
    together = embed(model, shapes)
    assert together.shape == (6, 64) and together.dtype == np.float32
    np.testing.assert_array_equal(embed(model, shapes), together)
    alone = np.concatenate([embed(model, [shape]) for shape in shapes])
    np.testing.assert_allclose(alone, together, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(embed(model, shapes[::-1])[::-1], together, rtol=1e-5, atol=1e-6)


def test_training_lowers_the_decoder_loss_and_writes_a_model(fitted, trained):
    root, _, _, shapes, _ = fitted
    model, samples = trained
    untrained = new_model(TINY, FAMILY, seed=QUICK_TRAIN.seed)
    before, after = decoder_loss(untrained, shapes, samples), decoder_loss(model, shapes, samples)
    assert after < 0.6 * before, (before, after)
    assert not (root / "model" / CHECKPOINT_NAME).exists()
    loaded = load_model(root / "model")
    assert loaded.config == TINY and loaded.family_id == shapes[0].family_id
    torch.testing.assert_close(loaded.reference, model.reference)
    assert model.reference.abs().sum() > 0  # relative to the family's initial weights by default
    np.testing.assert_array_equal(embed(loaded, shapes), embed(model, shapes))


def test_similar_ranks_a_refit_of_the_same_mesh_first(fitted, trained):
    _, _, _, shapes, refit = fitted
    model, _ = trained
    neighbours = similar(model, refit, shapes, k=3)
    assert shapes[neighbours[0].index].name == "ring"
    assert neighbours[0].distance < neighbours[1].distance <= neighbours[2].distance


def test_source_meshes_come_from_the_collection_or_the_samples_cache(fitted, trained, tmp_path):
    root, _, _, shapes, refit = fitted
    _, samples = trained
    from_cache = shape_samples([*shapes, refit], tmp_path, root / "samples.h5", QUICK_TRAIN)  # no meshes there
    torch.testing.assert_close(from_cache.meshes.points, samples.meshes.points)
    assert from_cache.mesh_of_shape.tolist() == [0, 1, 2, 3, 4, 5, 5]  # the refit shares the ring's samples
    with pytest.raises(NeuralShapesError, match="shape 'sphere': its source mesh 'sphere.ply' is not in"):
        shape_samples(shapes, tmp_path, tmp_path / "new-cache.h5", QUICK_TRAIN)


def test_mixed_families_are_refused_naming_both(fitted, tmp_path):
    shapes = fitted[3]
    other = replace(shapes[1], family_id=random_family().family_id)
    with pytest.raises(NeuralShapesError, match=f"{shapes[0].family_id}.*{other.family_id}"):
        train_nf2vec([shapes[0], other], None, tmp_path / "model", FAMILY, TINY, QUICK_TRAIN)
    model = new_model(TINY, FAMILY)
    with pytest.raises(NeuralShapesError, match="embeds family"):
        embed(model, [other])
    with pytest.raises(NeuralShapesError, match="not of the given family"):
        train_nf2vec(shapes, None, tmp_path / "model", random_family(), TINY, QUICK_TRAIN)


def test_corrupt_checkpoints_and_models_are_refused_in_one_line(fitted, trained, tmp_path):
    root, _, _, shapes, _ = fitted
    _, samples = trained
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"PK\x03\x04 not a checkpoint")
    with pytest.raises(NeuralShapesError, match="not valid nf2vec checkpoint") as error:
        train_nf2vec(shapes, samples, tmp_path, FAMILY, TINY, QUICK_TRAIN)
    assert "\n" not in str(error.value)
    save_tensors(tmp_path / CHECKPOINT_NAME, {"run": "another run", "step": 3})
    with pytest.raises(NeuralShapesError, match="checkpoint of another run"):
        train_nf2vec(shapes, samples, tmp_path, FAMILY, TINY, QUICK_TRAIN)
    with pytest.raises(NeuralShapesError, match="cannot read file"):
        load_model(tmp_path / "absent")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text((root / "model" / "config.json").read_text())
    (model_dir / WEIGHTS_NAME).write_bytes(b"garbage")
    with pytest.raises(NeuralShapesError, match="not valid nf2vec weights"):
        load_model(model_dir)


def test_an_interrupted_run_resumes_from_its_checkpoint(fitted, trained, tmp_path):
    _, _, _, shapes, _ = fitted
    _, samples = trained
    run = replace(QUICK_TRAIN, steps=60, checkpoint_every=25)
    whole = train_nf2vec(shapes, samples, tmp_path / "whole", FAMILY, TINY, run)

    def stop_at_step_40(event):
        if event.step == 40:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_nf2vec(
            shapes, samples, tmp_path / "resumed", FAMILY, TINY, replace(run, report_every=10), progress=stop_at_step_40
        )
    assert (tmp_path / "resumed" / CHECKPOINT_NAME).exists()
    events = []
    resumed = train_nf2vec(
        shapes, samples, tmp_path / "resumed", FAMILY, TINY, replace(run, report_every=10), progress=events.append
    )
    assert events[0].step == 30  # continued from the checkpoint of step 25
    np.testing.assert_allclose(embed(resumed, shapes), embed(whole, shapes), rtol=1e-4, atol=1e-5)


def test_train_nf2vec_command_end_to_end(fitted, tmp_path):
    _, collection, shapes_dir, _, _ = fitted
    args = (
        "train-nf2vec",
        shapes_dir,
        "--collection",
        collection,
        "-o",
        tmp_path / "model",
        "--steps",
        "20",
        "--shapes-per-step",
        "3",
        "--points-per-shape",
        "256",
        "--samples-per-shape",
        "4096",
        "--encoder-hidden",
        "32",
        "--embedding-size",
        "32",
        "--decoder-hidden",
        "32",
        "--decoder-layers",
        "3",
    )
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and "step 20" in result.stderr
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["config"]["embedding_size"] == 32 and config["training"]["steps"] == 20
    assert (collection / "samples-4096-uniform0.5-seed0.h5").exists()
    assert embed(load_model(tmp_path / "model"), [read_shape(shapes_dir / "ring.h5")]).shape == (1, 32)

    other = tmp_path / "other.h5"
    write_shape(other, replace(read_shape(shapes_dir / "cube.h5"), family_id="elsewhere-000000000000"))
    refused = run_cli("train-nf2vec", shapes_dir, other, "--collection", collection, "-o", tmp_path / "m2")
    assert refused.returncode == 1 and "different model families" in refused.stderr
    assert "elsewhere-000000000000" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
