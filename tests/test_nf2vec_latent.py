"""The latent family w(z) = theta + z B: flat weights, the PCA start, auto-decoder training (loss, held-out
z-fits measured on the field against the nearest training net, resume), MAP fits with sample weights,
the file (refusals) and the ``train-latent`` command."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest
import torch
import trimesh
from typer.testing import CliRunner

from backend.cli import app
from backend.errors import Cancelled, NeuralShapesError
from backend.nf2vec.latent import (
    LATENT_NAME,
    LatentFamily,
    LatentFitSettings,
    LatentPrior,
    estimate_prior,
    fit_latent,
    flat_forward,
    flatten,
    load_latent,
    save_latent,
    unflatten,
)
from backend.nf2vec.latent_training import (
    CHECKPOINT_NAME,
    latent_training_data,
    principal_subspace,
    train_latent,
)
from backend.shapes.family_file import resolve_family
from backend.shapes.network import evaluate_sdf
from tests.conftest import run_cli
from tests.nf2vec_toolkit import (
    MESHES,
    QUICK_LATENT,
    check_damaged_file_refused,
    fit_primitives,
    write_meshes,
    write_shapes,
)

FAMILY = resolve_family("default")
ARCH = FAMILY.architecture
# Shapes between the training primitives: a bar (between cube and rod/slab) and a disc (between slab and sphere).
HELD_OUT = {
    "bar": lambda: trimesh.creation.box(extents=(1.0, 0.5, 0.5)),
    "disc": lambda: trimesh.creation.cylinder(radius=0.5, height=0.3),
}
UNFITTED = "capsule"  # trained on with no fitted net: its latent starts at 0
QUICK = replace(QUICK_LATENT, steps=150, shapes_per_step=7, checkpoint_every=50, report_every=10)

pytestmark = [pytest.mark.usefixtures("single_torch_thread"), pytest.mark.slow]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Six fitted primitives to train on (+ an unfitted capsule), two fitted held-out shapes, their samples."""
    root = tmp_path_factory.mktemp("latent")
    collection, shapes_dir = root / "meshes", root / "shapes"
    write_meshes(
        collection, {**MESHES, **HELD_OUT, UNFITTED: lambda: trimesh.creation.capsule(height=0.6, radius=0.25)}
    )
    shapes = fit_primitives(collection, [*MESHES, *HELD_OUT])
    train, held = shapes[: len(MESHES)], shapes[len(MESHES) :]
    write_shapes(shapes_dir, train)
    cache = root / "samples.h5"
    data = latent_training_data(train, collection, cache, QUICK, unfitted=[collection / f"{UNFITTED}.ply"])
    held_samples = latent_training_data(held, collection, cache, QUICK).samples.meshes
    return root, collection, shapes_dir, train, held, data, held_samples


@pytest.fixture(scope="module")
def trained(toy, tmp_path_factory):
    """The latent family after 0 steps (the PCA start) and after QUICK.steps."""
    data = toy[5]
    root = tmp_path_factory.mktemp("trained")
    start = train_latent(data, root / "start", FAMILY.family_id, ARCH, replace(QUICK, steps=0))
    return start, train_latent(data, root / "end", FAMILY.family_id, ARCH, QUICK)


def _random_latent(k: int = 5, seed: int = 0) -> LatentFamily:
    g = torch.Generator().manual_seed(seed)
    theta = torch.from_numpy(flatten(FAMILY.initial_weights))
    basis = 0.01 * torch.randn(k, ARCH.parameter_count, generator=g)
    return LatentFamily(FAMILY.family_id, ARCH, theta, basis, LatentPrior(torch.zeros(k), torch.ones(k)))


def test_zero_latent_decodes_to_theta_bit_for_bit_and_the_field_is_the_nets():
    latent = _random_latent()
    assert flatten(latent.weights(np.zeros(latent.k, np.float32))).tobytes() == latent.theta.numpy().tobytes()
    for (w, b), (w0, b0) in zip(unflatten(ARCH, flatten(FAMILY.initial_weights)), FAMILY.initial_weights):
        assert w.shape == w0.shape and np.array_equal(w, w0) and np.array_equal(b, b0)
    z = torch.randn(3, latent.k, generator=torch.Generator().manual_seed(1))
    points = torch.rand(3, 500, 3, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        batched = latent.field(z, points)
    for row in range(3):  # the batched pass is each decoded net evaluated on its own
        np.testing.assert_allclose(
            batched[row].numpy(), evaluate_sdf(ARCH, latent.weights(z[row]), points[row].numpy()), atol=1e-6
        )


def test_pca_start_is_the_projection_of_the_fitted_nets(toy, trained):
    data = toy[5]
    weights = data.weights[data.fitted].double().numpy()
    mean = weights.mean(0)
    theta, basis, coordinates = principal_subspace(data.weights[data.fitted], 3)
    # The projection on the top-3 principal directions, from the covariance's eigenvectors (another route).
    values, vectors = np.linalg.eigh((weights - mean) @ (weights - mean).T)
    top = (weights - mean).T @ vectors[:, -3:]
    top /= np.linalg.norm(top, axis=0)
    projection = mean + (weights - mean) @ top @ top.T
    np.testing.assert_allclose((theta + coordinates @ basis).double().numpy(), projection, atol=1e-5)
    np.testing.assert_allclose(coordinates.std(0).numpy(), 1.0, atol=1e-5)  # unit-variance latents
    theta, basis, coordinates = principal_subspace(data.weights[data.fitted], len(weights) - 1)
    np.testing.assert_allclose(
        (theta + coordinates @ basis).numpy(), weights, atol=1e-5
    )  # f - 1 directions hold every net
    start = trained[0]
    theta, basis, coordinates = principal_subspace(data.weights[data.fitted], QUICK.k)
    assert torch.equal(start.theta, theta) and torch.equal(start.basis, basis)
    assert (
        torch.equal(start.latents[: len(weights)], coordinates) and not start.latents[-1].any()
    )  # the unfitted capsule: 0
    with pytest.raises(NeuralShapesError, match="at least 7 fitted nets"):
        principal_subspace(data.weights[data.fitted], 6)


def test_training_lowers_the_loss_and_held_out_fits_beat_the_nearest_training_net(toy, trained):
    _, _, _, train, held, data, held_samples = toy
    start, end = trained
    generator = torch.Generator().manual_seed(5)
    picks = torch.randint(data.samples.meshes.points.shape[1], (len(data.names), 4096), generator=generator)
    meshes = data.samples.mesh_of_shape[:, None]
    points, sdf = data.samples.meshes.points[meshes, picks], data.samples.meshes.sdf[meshes, picks]
    with torch.no_grad():
        before, after = ((family.field(family.latents, points) - sdf).abs().mean() for family in (start, end))
    assert after < 0.6 * before, (before, after)
    assert end.training["steps"] == QUICK.steps and not (toy[0] / "end" / CHECKPOINT_NAME).exists()

    # Held out: z fitted to half of each shape's samples, the field measured on the other half.
    half = held_samples.points.shape[1] // 2
    fit_points, fit_sdf = held_samples.points[:, :half], held_samples.sdf[:, :half]
    eval_points, eval_sdf = held_samples.points[:, half:], held_samples.sdf[:, half:]
    fit = fit_latent(end, fit_points, fit_sdf, settings=LatentFitSettings(steps=200))
    trained_weights = data.weights[data.fitted]
    held_weights = torch.from_numpy(np.stack([flatten(shape.weights) for shape in held]))
    nearest = trained_weights[torch.cdist(held_weights, trained_weights).argmin(1)]
    with torch.no_grad():
        latent_error = (end.field(torch.from_numpy(fit.latents), eval_points) - eval_sdf).abs().mean(1)
        nearest_error = (flat_forward(ARCH, nearest, eval_points) - eval_sdf).abs().mean(1)
        best_error = torch.stack(
            [
                (flat_forward(ARCH, trained_weights, eval_points[row].expand(len(train), -1, -1)) - eval_sdf[row])
                .abs()
                .mean(1)
                .min()
                for row in range(len(held))
            ]
        )
    assert (latent_error < 0.7 * nearest_error).all(), (latent_error, nearest_error)
    assert (latent_error < best_error).all(), (
        latent_error,
        best_error,
    )  # better than any training net, chosen by its field
    np.testing.assert_allclose(
        fit.data_loss,
        ((flat_forward(ARCH, end.flat(torch.from_numpy(fit.latents)), fit_points) - fit_sdf).abs().mean(1))
        .detach()
        .numpy(),
        rtol=1e-5,
    )


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(toy, tmp_path):
    data = toy[5]
    run = replace(QUICK, steps=30, checkpoint_every=10, report_every=5)
    whole = train_latent(data, tmp_path / "whole", FAMILY.family_id, ARCH, run)
    cancel = threading.Event()

    def stop_after_20(event):
        if event.step == 20:
            cancel.set()

    with pytest.raises(Cancelled):
        train_latent(data, tmp_path / "cut", FAMILY.family_id, ARCH, run, progress=stop_after_20, cancel=cancel)
    assert (tmp_path / "cut" / CHECKPOINT_NAME).exists()
    with pytest.raises(NeuralShapesError, match="checkpoint of another run"):
        train_latent(data, tmp_path / "cut", FAMILY.family_id, ARCH, replace(run, prior_weight=1e-3))
    events = []
    resumed = train_latent(data, tmp_path / "cut", FAMILY.family_id, ARCH, run, progress=events.append)
    assert events[0].step == 25  # continued from the checkpoint of step 20
    for name in ("theta", "basis", "latents"):
        assert torch.equal(getattr(resumed, name), getattr(whole, name)), name


def test_fit_latent_weights_samples_and_uses_the_class_prior():
    latent = _random_latent(k=3)
    target = torch.tensor([[0.5, -1.0, 2.0]])
    points = torch.rand(1, 300, 3, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        sdf = latent.field(target, points)
    mask = (points[..., 0] > 0).float()
    settings = LatentFitSettings(steps=60, batch_points=4096, prior_weight=1e-2)  # all points every step
    weighted = fit_latent(latent, points, sdf.numpy(), sample_weights=mask, settings=settings)
    keep = mask[0].bool()
    subset = fit_latent(latent, points[:, keep], sdf[:, keep], settings=settings)
    np.testing.assert_allclose(weighted.latents, subset.latents, atol=1e-4)  # a weight of 0 drops a point
    np.testing.assert_allclose(weighted.data_loss, subset.data_loss, rtol=1e-4)

    prior = estimate_prior(torch.tensor([[0.0, 0, 0], [2, 2, 2], [10, 10, 10]]), np.array([0, 0, 1]), ["a", "b"])
    np.testing.assert_allclose(prior.class_mean.numpy(), [[1, 1, 1], [10, 10, 10]])
    assert torch.equal(prior.class_std[1], prior.std)  # one latent has no spread: the overall std
    latent.prior = prior
    no_data = fit_latent(
        latent, points, sdf, sample_weights=torch.zeros(1, 300), labels=np.array([1]), settings=settings
    )
    np.testing.assert_allclose(no_data.latents, [[10, 10, 10]], atol=1e-3)  # without data the MAP is the class mean


def test_foreign_and_corrupt_latent_files_are_refused_in_one_line(trained, tmp_path):
    end = trained[1]
    save_latent(tmp_path, end)
    loaded = load_latent(tmp_path, FAMILY.family_id)
    assert (
        torch.equal(loaded.basis, end.basis) and torch.equal(loaded.latents, end.latents) and loaded.names == end.names
    )
    assert loaded.training["steps"] == QUICK.steps and loaded.prior.class_names == []

    def refused(match: str, family_id: str | None = FAMILY.family_id) -> None:
        with pytest.raises(NeuralShapesError, match=match) as caught:
            load_latent(tmp_path, family_id)
        assert str(tmp_path / LATENT_NAME) in str(caught.value) and "\n" not in str(caught.value)

    refused("of family .*, not of other-000000000000", "other-000000000000")
    check_damaged_file_refused(tmp_path / LATENT_NAME, refused, "latent family", "neural-shapes/nf2vec-gan")
    save_latent(tmp_path, replace(end, basis=end.basis[:, :100]))
    refused("basis is not a finite tensor of shape")
    save_latent(tmp_path, replace(end, theta=end.theta * float("nan")))
    refused("theta is not a finite tensor")


def test_train_latent_command_end_to_end(toy, tmp_path):
    root, collection, shapes_dir, *_ = toy
    model = tmp_path / "model"
    args = (
        "train-latent",
        shapes_dir,
        "--collection",
        collection,
        "-o",
        model,
        "--k",
        "3",
        "--steps",
        "10",
        "--shapes-per-step",
        "4",
        "--points-per-shape",
        "256",
        "--samples-per-shape",
        str(QUICK.samples_per_shape),
        "--samples-cache",
        root / "samples.h5",
        "--unfitted",
        collection / f"{UNFITTED}.ply",
    )
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and "7 shapes (6 fitted)" in result.stdout and "step 10" in result.stderr
    latent = load_latent(model, FAMILY.family_id)
    assert latent.k == 3 and latent.names[-1] == UNFITTED
    assert not (model / "family.h5").exists()  # the default family is bundled: named by id, not copied
    too_large = CliRunner().invoke(app, [*map(str, args), "--k", "6"])  # in-process: refused before any sampling
    assert too_large.exit_code == 1 and "at least 7 fitted nets" in too_large.stderr
    assert len(too_large.stderr.strip().splitlines()) == 1
