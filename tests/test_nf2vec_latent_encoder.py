"""The nf2vec encoder distilled into a latent family: the weight layout in torch, exact yaw turns, training
(loss, decodes of training nets vs theta, re-fits found by their first fit's latent), refinement on a
held-out shape's own field, resume, the file's refusals and the ``train-latent-encoder`` command."""

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
from backend.nf2vec.encoder import weight_matrices
from backend.nf2vec.latent import LatentFitSettings, RefineSettings, flat_forward, flatten, save_latent
from backend.nf2vec.latent_encoder import (
    CHECKPOINT_NAME,
    ENCODER_NAME,
    encode_latent,
    flat_matrices,
    latent_encoder_data,
    load_latent_encoder,
    refine_latent,
    save_latent_encoder,
    train_latent_encoder,
    yaw_nets,
)
from backend.nf2vec.latent_projection import FieldProjection
from backend.nf2vec.latent_training import latent_training_data, train_latent
from backend.shapes.architecture import random_family
from backend.shapes.checkpoints import save_tensors
from backend.shapes.family_file import resolve_family
from tests.conftest import run_cli
from tests.nf2vec_toolkit import MESHES, QUICK_ENCODER, QUICK_LATENT, fit_primitives, write_meshes, write_shapes

FAMILY = resolve_family("default")
ARCH = FAMILY.architecture
HELD_OUT = {"bar": lambda: trimesh.creation.box(extents=(1.0, 0.5, 0.5))}  # between the cube, the rod and the slab
LATENT = replace(QUICK_LATENT, steps=150, report_every=50)
QUICK = replace(QUICK_ENCODER, stages=(64, 64), steps=300, shapes_per_step=8, checkpoint_every=100, report_every=10)

pytestmark = [pytest.mark.usefixtures("single_torch_thread"), pytest.mark.slow]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Six primitives fitted (seed 0) and re-fitted (seed 1: trained on; seed 2: held out), a held-out bar,
    a latent family of the first fits, the encoder's data and the encoder after 0 and QUICK.steps steps."""
    root = tmp_path_factory.mktemp("latent_encoder")
    collection = root / "meshes"
    write_meshes(collection, {**MESHES, **HELD_OUT})
    train, refits, unseen_refits = (fit_primitives(collection, list(MESHES), seed=seed) for seed in (0, 1, 2))
    held = fit_primitives(collection, list(HELD_OUT))
    cache = root / "samples.h5"
    latent = train_latent(
        latent_training_data(train, collection, cache, LATENT), root / "model", FAMILY.family_id, ARCH, LATENT
    )
    data = latent_encoder_data(train, latent, collection, cache, QUICK, refits)
    start = train_latent_encoder(data, latent, FAMILY, root / "start", replace(QUICK, steps=0))
    end = train_latent_encoder(data, latent, FAMILY, root / "model", QUICK)
    held_samples = latent_training_data(held, collection, cache, LATENT).samples.meshes
    return {
        "root": root,
        "collection": collection,
        "train": train,
        "refits": refits,
        "unseen_refits": unseen_refits,
        "held": held,
        "held_samples": held_samples,
        "latent": latent,
        "data": data,
        "start": start,
        "end": end,
    }


def _mesh_field_error(latent, z: np.ndarray | torch.Tensor, points: torch.Tensor, sdf: torch.Tensor) -> torch.Tensor:
    """Mean |f_{w(z)} - sdf| (s,) of latents z (s, k) at points (s, m, 3) against the meshes' distances (s, m)."""
    with torch.no_grad():
        return (latent.field(torch.as_tensor(z), points) - sdf).abs().mean(1)


def test_weights_in_torch_match_the_encoder_layout_and_a_yaw_turn_is_exact():
    family = random_family(ARCH, seed=3)
    nets = [FAMILY.initial_weights, family.initial_weights]
    flat = torch.from_numpy(np.stack([flatten(weights) for weights in nets]))
    assert torch.equal(flat_matrices(ARCH, flat), weight_matrices(nets, ARCH.width))
    angles = torch.tensor([0.7, -2.1])
    points = torch.rand(2, 400, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    cos, sin = torch.cos(angles)[:, None], torch.sin(angles)[:, None]
    turned_points = torch.stack(
        [cos * points[..., 0] - sin * points[..., 1], sin * points[..., 0] + cos * points[..., 1], points[..., 2]],
        dim=-1,
    )  # counter-clockwise about +Z
    with torch.no_grad():
        np.testing.assert_allclose(
            flat_forward(ARCH, yaw_nets(ARCH, flat, angles), turned_points).numpy(),
            flat_forward(ARCH, flat, points).numpy(),
            atol=1e-5,
        )
    assert torch.equal(yaw_nets(ARCH, flat, torch.zeros(2)), flat)  # no turn: bit for bit


def test_training_lowers_the_loss_and_training_nets_decode_close_to_their_fields(toy):
    latent, data, start, end = toy["latent"], toy["data"], toy["start"], toy["end"]
    generator = torch.Generator().manual_seed(5)
    picks = torch.randint(data.samples.meshes.points.shape[1], (len(data.names), 4096), generator=generator)
    meshes = data.samples.mesh_of_shape[:, None]
    points, sdf = data.samples.meshes.points[meshes, picks], data.samples.meshes.sdf[meshes, picks]

    def distillation_loss(encoder) -> tuple[torch.Tensor, np.ndarray]:
        z = encode_latent(encoder, latent, toy["train"])
        error = _mesh_field_error(latent, z, points, sdf)
        return error.mean() + QUICK.latent_pull * ((torch.from_numpy(z) - data.targets) ** 2).sum(
            1
        ).mean() / latent.k, error

    before, _ = distillation_loss(start)
    after, error = distillation_loss(end)
    assert after < 0.5 * before, (before, after)
    assert data.counts == {"fitted": 6, "refits": 6, "decoded": 6} and end.training["steps"] == QUICK.steps
    assert not (toy["root"] / "model" / CHECKPOINT_NAME).exists()
    theta_error = _mesh_field_error(latent, torch.zeros(len(data.names), latent.k), points, sdf)
    # every one nearer than theta (the subspace's origin), and all of them far nearer on the whole
    assert (error < theta_error).all() and error.mean() < 0.5 * theta_error.mean(), (error, theta_error)


def test_a_second_seed_refit_encodes_closest_to_its_first_fits_latent(toy):
    latent, data = toy["latent"], toy["data"]
    for refits in (toy["refits"], toy["unseen_refits"]):  # trained on, and never seen
        z = torch.from_numpy(encode_latent(toy["end"], latent, refits))
        assert torch.equal(torch.cdist(z, data.targets).argmin(1), torch.arange(len(refits)))


def test_refinement_on_the_shapes_own_field_improves_a_held_out_encoding(toy):
    latent, end, held, samples = toy["latent"], toy["end"], toy["held"], toy["held_samples"]
    encoded = encode_latent(end, latent, held)
    refined = refine_latent(end, latent, held, RefineSettings(points=8192, fit=LatentFitSettings(steps=150)))
    # Measured where the surface is decided (the mesh's samples within 0.02 of it), as refinement samples 90% of
    # its points near the surface: far from it the field may get worse without changing the shape (0.0474 ->
    # 0.0486 over all samples, while 0.0228 -> 0.0164 near the surface).
    near = (samples.sdf.abs() < 0.02).float()
    with torch.no_grad():
        errors = [
            (latent.field(torch.as_tensor(z), samples.points) - samples.sdf).abs() for z in (encoded, refined.latents)
        ]
    encoded_error, refined_error = ((error * near).sum(1) / near.sum(1) for error in errors)
    # The encoder starts from the field projection, so refinement has less to win than from a network alone.
    assert (refined_error < 0.95 * encoded_error).all(), (encoded_error, refined_error)
    assert refined.latents.shape == (1, latent.k) and refined.data_loss.shape == (1,)


def test_the_field_projection_is_exact_on_the_subspace_and_nearer_by_field_than_the_weight_projection(toy):
    latent, start = toy["latent"], toy["start"]
    projection = start.projection
    z = torch.randn(5, latent.k, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        np.testing.assert_allclose(projection.project(latent.flat(z)).numpy(), z.numpy(), atol=2e-3)
    # The untrained encoder (its head starts at zero) is the projection.
    flat = torch.from_numpy(np.stack([flatten(shape.weights) for shape in toy["held"]]))
    np.testing.assert_allclose(encode_latent(start, latent, toy["held"]), projection.project(flat).numpy(), atol=1e-6)
    # A held-out net, off the subspace: by the field, the projection beats the plain least-squares one in weights.
    samples = toy["held_samples"]
    plain = torch.linalg.lstsq(latent.basis.T, (flat - latent.theta).T).solution.T
    field_error = _mesh_field_error(latent, projection.project(flat), samples.points, samples.sdf)
    weight_error = _mesh_field_error(latent, plain, samples.points, samples.sdf)
    assert (field_error < weight_error).all(), (field_error, weight_error)


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(toy, tmp_path):
    latent, data = toy["latent"], toy["data"]
    run = replace(QUICK, steps=30, checkpoint_every=10, report_every=5)
    whole = train_latent_encoder(data, latent, FAMILY, tmp_path / "whole", run)
    cancel = threading.Event()

    def stop_after_20(event):
        if event.step == 20:
            cancel.set()

    with pytest.raises(Cancelled):
        train_latent_encoder(data, latent, FAMILY, tmp_path / "cut", run, progress=stop_after_20, cancel=cancel)
    assert (tmp_path / "cut" / CHECKPOINT_NAME).exists()
    with pytest.raises(NeuralShapesError, match="checkpoint of another run"):
        train_latent_encoder(data, latent, FAMILY, tmp_path / "cut", replace(run, yaw_fraction=0.5))
    events = []
    resumed = train_latent_encoder(data, latent, FAMILY, tmp_path / "cut", run, progress=events.append)
    assert events[0].step == 25  # continued from the checkpoint of step 20
    for (name, value), other in zip(whole.net.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.equal(value, other), name


def test_foreign_and_corrupt_encoder_files_are_refused_in_one_line(toy, tmp_path):
    latent, end = toy["latent"], toy["end"]
    loaded = load_latent_encoder(toy["root"] / "model", latent)
    np.testing.assert_array_equal(encode_latent(loaded, latent, toy["train"]), encode_latent(end, latent, toy["train"]))

    def refused(match: str, for_latent=latent) -> None:
        with pytest.raises(NeuralShapesError, match=match) as caught:
            load_latent_encoder(tmp_path, for_latent)
        assert str(tmp_path / ENCODER_NAME) in str(caught.value) and "\n" not in str(caught.value)

    save_latent_encoder(tmp_path, end)
    refused("of family .*, not of other-000000000000", replace(latent, family_id="other-000000000000"))
    refused("distilled into another latent family", replace(latent, basis=latent.basis * 2))
    path = tmp_path / ENCODER_NAME
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    refused("not a valid latent encoder file")
    save_tensors(path, {"format": "neural-shapes/nf2vec-latent", "version": 1})
    refused("not a latent encoder file")
    save_latent_encoder(tmp_path, replace(end, reference=end.reference[:10]))
    refused("reference weights of the wrong shape")
    save_latent_encoder(
        tmp_path, replace(end, projection=FieldProjection(end.projection.matrix[:, :-1], end.projection.offset))
    )
    refused("projection is not a finite tensor of shape")
    save_latent_encoder(
        tmp_path, replace(end, projection=FieldProjection(end.projection.matrix, end.projection.offset * np.nan))
    )
    refused("projection offset is not a finite tensor")
    # A file of before the projection (the network alone) still loads and encodes with its network.
    save_latent_encoder(tmp_path, replace(end, projection=None))
    alone = load_latent_encoder(tmp_path, latent)
    assert alone.projection is None
    flat = torch.from_numpy(np.stack([flatten(shape.weights) for shape in toy["train"]]))
    with torch.no_grad():
        expected = end.net(flat_matrices(ARCH, flat) - end.reference).numpy()
    np.testing.assert_allclose(encode_latent(alone, latent, toy["train"]), expected, atol=1e-4)
    with pytest.raises(NeuralShapesError, match="is of family"):
        encode_latent(end, latent, [replace(toy["train"][0], family_id="other-000000000000")])
    with pytest.raises(NeuralShapesError, match="has no latent in the latent family"):
        latent_encoder_data(toy["held"], latent, toy["collection"], toy["root"] / "samples.h5", QUICK)


def test_train_latent_encoder_command_end_to_end(toy, tmp_path):
    shapes_dir, refits_dir, model = tmp_path / "shapes", tmp_path / "refits", tmp_path / "model"
    write_shapes(shapes_dir, toy["train"])
    write_shapes(refits_dir, toy["refits"])
    save_latent(model, toy["latent"])
    result = run_cli(
        "train-latent-encoder",
        shapes_dir,
        "--model",
        model,
        "--collection",
        toy["collection"],
        "--refits",
        refits_dir,
        "--steps",
        "10",
        "--encoder-stages",
        "32",
        "--samples-per-shape",
        str(QUICK.samples_per_shape),
        "--samples-cache",
        toy["root"] / "samples.h5",
    )
    assert result.returncode == 0, result.stderr
    assert (
        "wrote" in result.stdout
        and "6 fitted, 6 re-fits, 6 decoded nets" in result.stdout
        and "step 10" in result.stderr
    )
    assert load_latent_encoder(model, toy["latent"]).stages == (32,)
    projection_only = run_cli(
        "train-latent-encoder", shapes_dir, "--model", model, "--collection", toy["collection"], "--steps", "0",
        "--samples-per-shape", str(QUICK.samples_per_shape), "--samples-cache", toy["root"] / "samples.h5",
    )  # fmt: skip
    assert projection_only.returncode == 0 and "0 steps," in projection_only.stdout, projection_only.stderr
    encoder = load_latent_encoder(model, toy["latent"])
    assert not encoder.net.head.weight.any() and encoder.projection is not None
    (model / "latent.safetensors").unlink()
    missing = CliRunner().invoke(
        app, ["train-latent-encoder", str(shapes_dir), "--model", str(model), "--collection", str(toy["collection"])]
    )  # in-process: refused before any sampling
    assert (
        missing.exit_code == 1
        and len(missing.stderr.strip().splitlines()) == 1
        and "latent.safetensors" in missing.stderr
    )
