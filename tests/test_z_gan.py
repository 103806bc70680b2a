"""The GAN on a latent family's z: it learns a class-separated toy distribution, truncation 0 gives the
class's prior mean, seeds reproduce, an interrupted run resumes, the file round trip and its refusals, the
``train-z-gan`` command (labels from the latent file, or from a collection manifest)."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from backend.cli import app
from backend.errors import Cancelled, NeuralShapesError
from backend.fitting.meta_learning import CollectionSamples
from backend.nf2vec.latent import LatentFamily, estimate_prior, flat_forward, flatten, load_latent, save_latent
from backend.nf2vec.latent_training import LatentSettings, LatentTrainingData, train_latent
from backend.nf2vec.ops.latent_ops import generate_latent
from backend.nf2vec.tasks.latent_gan import LatentGanSettings
from backend.nf2vec.tasks.z_gan import (
    CHECKPOINT_NAME,
    Z_GAN_NAME,
    load_z_gan,
    save_z_gan,
    train_z_gan,
    training_labels,
    z_gan_sampler,
)
from backend.nf2vec.training import ShapeSamples
from backend.shapes.family_file import resolve_family
from tests.conftest import run_cli
from tests.nf2vec_toolkit import check_damaged_file_refused

FAMILY = resolve_family("default")
CLASSES = ["a", "b"]
PER_CLASS = 60
K = 4
TOY_GAN = LatentGanSettings(
    noise_size=8, generator_hidden=(32,), critic_hidden=(64, 64), steps=300, critic_steps=3, batch_size=32
)

pytestmark = [pytest.mark.usefixtures("single_torch_thread"), pytest.mark.slow]


def _toy_latent(seed: int = 0) -> LatentFamily:
    """Two classes of z, far apart along the first axis with different spreads, on a small random basis
    (so every z decodes to a net near theta, which has a surface)."""
    g = torch.Generator().manual_seed(seed)
    centres, spreads = torch.tensor([[4.0, 1.0, 0, 0], [-4.0, 0, 1.0, 0]]), torch.tensor([0.5, 1.0])
    labels = torch.arange(2).repeat_interleave(PER_CLASS)
    latents = centres[labels] + spreads[labels, None] * torch.randn(len(labels), K, generator=g)
    theta = torch.from_numpy(flatten(FAMILY.initial_weights))
    # Shift the output bias (the last weight) so that half the cube is inside: the nets have a surface.
    values = flat_forward(FAMILY.architecture, theta[None], torch.rand(1, 4096, 3, generator=g) * 2 - 1)
    theta[-1] -= torch.atanh(values.median().clamp(-0.99, 0.99))
    basis = 1e-3 * torch.randn(K, theta.shape[0], generator=g)
    names = [f"{CLASSES[label]}_{index:04d}" for index, label in enumerate(labels.tolist())]
    prior = estimate_prior(latents, labels.numpy(), CLASSES)
    return LatentFamily(FAMILY.family_id, FAMILY.architecture, theta, basis, prior, latents, names, labels=labels)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    latent = _toy_latent()
    folder = tmp_path_factory.mktemp("z-gan")
    return latent, folder, train_z_gan(latent, folder, training_labels(latent), TOY_GAN)


def _draw(z_gan, count: int, class_name: str | None, truncation: float, seed: int = 0) -> np.ndarray:
    return z_gan_sampler(z_gan)(count, torch.Generator().manual_seed(seed), class_name, truncation)


def test_generated_z_follow_their_class_and_truncation_zero_is_the_class_mean(trained):
    latent, _, z_gan = trained
    means, stds = latent.prior.class_mean.numpy(), latent.prior.class_std.numpy()
    for row, name in enumerate(CLASSES):
        z = _draw(z_gan, 200, name, 1.0)
        distances = np.linalg.norm(z[:, None, :] - means[None], axis=2)
        assert (distances.argmin(1) == row).mean() >= 0.95
        assert np.abs(z.mean(0) - means[row]).max() < 0.5 * stds[row].max() + 0.3
        assert z.std(0).mean() > 0.3 * stds[row].mean()  # not collapsed to one point
        np.testing.assert_allclose(_draw(z_gan, 3, name, 0.0), np.repeat(means[row : row + 1], 3, 0), atol=1e-5)
        half = _draw(z_gan, 200, name, 0.5)  # the same noise, half-way to the mean
        np.testing.assert_allclose(half, means[row] + 0.5 * (z - means[row]), atol=1e-4)
    mixed = _draw(z_gan, 200, None, 1.0)
    assert 0.3 < (mixed[:, 0] > 0).mean() < 0.7  # no class asked: both drawn


def test_same_seed_same_latents_and_generation_uses_the_sampler(trained):
    latent, _, z_gan = trained
    np.testing.assert_array_equal(_draw(z_gan, 5, "b", 0.7, seed=3), _draw(z_gan, 5, "b", 0.7, seed=3))
    assert not np.array_equal(_draw(z_gan, 5, "b", 0.7, seed=3), _draw(z_gan, 5, "b", 0.7, seed=4))
    shapes = generate_latent(latent, z_gan_sampler(z_gan), 3, seed=2, class_name="a", truncation=0.7)
    again = generate_latent(latent, z_gan_sampler(z_gan), 3, seed=2, class_name="a", truncation=0.7)
    assert [flatten(s.weights).tobytes() for s in shapes] == [flatten(s.weights).tobytes() for s in again]
    with pytest.raises(NeuralShapesError, match="unknown class 'sofa'"):
        _draw(z_gan, 1, "sofa", 1.0)


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(trained, tmp_path):
    latent, _, z_gan = trained
    cancel = threading.Event()

    def stop_at_150(event) -> None:
        if event.step >= 150:
            cancel.set()

    with pytest.raises(Cancelled):
        train_z_gan(latent, tmp_path, training_labels(latent), TOY_GAN, stop_at_150, cancel, checkpoint_every=75)
    assert (tmp_path / CHECKPOINT_NAME).exists()
    resumed = train_z_gan(latent, tmp_path, training_labels(latent), TOY_GAN, checkpoint_every=75)
    assert not (tmp_path / CHECKPOINT_NAME).exists()
    for got, want in zip(resumed.gan.generator.state_dict().values(), z_gan.gan.generator.state_dict().values()):
        torch.testing.assert_close(got, want)
    cancel.clear()
    with pytest.raises(Cancelled):
        train_z_gan(latent, tmp_path, training_labels(latent), TOY_GAN, stop_at_150, cancel, checkpoint_every=75)
    with pytest.raises(NeuralShapesError, match="checkpoint of another run"):
        train_z_gan(latent, tmp_path, training_labels(latent), replace(TOY_GAN, seed=1))


def test_file_round_trip_and_refusals_in_one_line(trained, tmp_path):
    latent, folder, z_gan = trained
    loaded = load_z_gan(folder, latent)
    np.testing.assert_array_equal(_draw(loaded, 7, "a", 0.8, seed=5), _draw(z_gan, 7, "a", 0.8, seed=5))
    assert (
        loaded.class_names == tuple(CLASSES)
        and loaded.gan.settings == TOY_GAN
        and loaded.gan.training["steps"] == TOY_GAN.steps
    )
    path = tmp_path / Z_GAN_NAME

    def refused(match: str, for_latent: LatentFamily = latent) -> None:
        with pytest.raises(NeuralShapesError, match=match) as caught:
            load_z_gan(tmp_path, for_latent)
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)

    refused("No such file|not found|does not exist|cannot read")
    save_z_gan(tmp_path, z_gan)
    refused("trained for another latent family", _toy_latent(seed=1))
    check_damaged_file_refused(path, refused, "z GAN", "neural-shapes/nf2vec-latent-encoder")
    save_z_gan(tmp_path, replace(z_gan, centres=z_gan.centres[:, :2]))
    refused("malformed z GAN .*centres")


def test_the_latent_file_keeps_the_training_labels(tmp_path):
    latent = _toy_latent()
    count = 6  # train-latent on random nets and samples: what matters is that the labels reach the file
    samples = ShapeSamples(
        CollectionSamples([f"m{i}" for i in range(count)], torch.rand(count, 64, 3), torch.rand(count, 64)),
        torch.arange(count),
    )
    data = LatentTrainingData(
        latent.names[:count],
        samples,
        latent.theta + torch.rand(count, latent.theta.shape[0]),
        torch.ones(count, dtype=torch.bool),
        np.array([0, 1, 0, 1, 1, 0]),
        CLASSES,
    )
    trained = train_latent(
        data, tmp_path / "trained", FAMILY.family_id, FAMILY.architecture, LatentSettings(k=2, steps=1)
    )
    assert load_latent(tmp_path / "trained").labels.tolist() == [0, 1, 0, 1, 1, 0] == training_labels(trained).tolist()
    save_latent(tmp_path, latent)
    assert torch.equal(load_latent(tmp_path).labels, latent.labels)
    save_latent(tmp_path, replace(latent, labels=latent.labels[:-1]))
    with pytest.raises(NeuralShapesError, match="labels are not one class row per training latent"):
        load_latent(tmp_path)


def test_train_z_gan_command_end_to_end(tmp_path):
    latent = _toy_latent()
    model = tmp_path / "model"
    save_latent(model, latent)
    result = run_cli("train-z-gan", "--model", model, "--steps", "20")
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and "2 classes, 20 steps" in result.stdout and "step 20/20" in result.stderr
    assert load_z_gan(model, latent).gan.training["steps"] == 20
    # A latent file that keeps no labels (written before they were kept): the classes come from a manifest.
    save_latent(model, replace(latent, labels=None))
    no_labels = CliRunner().invoke(app, ["train-z-gan", "--model", str(model), "--steps", "5"])
    assert no_labels.exit_code == 1 and "pass the collection" in no_labels.stderr
    assert len(no_labels.stderr.strip().splitlines()) == 1
    collection = tmp_path / "collection"
    collection.mkdir()
    items = [
        {
            "file": f"{name}.ply",
            "class": name[0],
            "label": CLASSES.index(name[0]),
            "seed": 0,
            "messy": False,
            "faces": 4,
        }
        for name in latent.names
    ]
    for item in items:
        (collection / item["file"]).write_text("ply\n")
    (collection / "manifest.json").write_text(
        json.dumps(
            {
                "format": "neural-shapes-collection",
                "version": 2,
                "seed": 0,
                "messy_fraction": 0.0,
                "orientation": "canonical",
                "classes": CLASSES,
                "items": items,
            }
        )
    )
    np.testing.assert_array_equal(training_labels(replace(latent, labels=None), collection), latent.labels.numpy())
