"""Networks on nf2vec embeddings (latent GAN, classifier, transfer) on synthetic embeddings, their files
in the model folder and the refusals of bad ones, partial meshes for completion, and the make-partials,
train-gan, train-classifier and train-completion commands on a few quickly fitted shapes."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import trimesh

from backend.datasets.partials import KEPT_BY_PLANE, KEPT_BY_SPHERE, cut_faces, make_partials, read_partials_manifest
from backend.datasets.procedural import make_collection, read_manifest
from backend.errors import NeuralShapesError
from backend.nf2vec.config import Nf2vecConfig
from backend.nf2vec.embedding import embed
from backend.nf2vec.model import load_model, new_model, save_model
from backend.nf2vec.tasks.classifier import ClassifierSettings, load_classifier, save_classifier, train_classifier
from backend.nf2vec.tasks.latent_gan import LatentGanSettings, load_gan, save_gan, train_latent_gan
from backend.nf2vec.tasks.task_data import shape_classes
from backend.nf2vec.tasks.transfer import TransferSettings, load_transfer, save_transfer, train_transfer
from backend.shapes.architecture import random_family
from backend.shapes.checkpoints import load_tensors, save_tensors
from backend.shapes.shape_file import read_shape
from tests.conftest import run_cli

SIZE = 16  # embedding size throughout
CLASSES = ["a", "b", "c"]
TINY_GAN = LatentGanSettings(noise_size=16, generator_hidden=(64,), critic_hidden=(64, 64), steps=300)
TINY_CLASSIFIER = ClassifierSettings(hidden=(32, 16), epochs=60, batch_size=32)
TINY_TRANSFER = TransferSettings(layers=3, hidden=64, epochs=60, batch_size=32)
TINY_NF2VEC = Nf2vecConfig(encoder_hidden=(8,), embedding_size=SIZE, decoder_hidden=8, decoder_layers=3, frequencies=0)


pytestmark = [pytest.mark.usefixtures("single_torch_thread"), pytest.mark.slow]


@pytest.fixture(scope="module")
def clusters():
    """Three well separated Gaussian clusters of 60 embeddings each: (embeddings (180, 16), labels (180,))."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(len(CLASSES), SIZE)) * 2 + 5
    labels = np.repeat(np.arange(len(CLASSES)), 60)
    return (centres[labels] + rng.normal(size=(len(labels), SIZE)) * 0.2).astype(np.float32), labels


@pytest.fixture(scope="module")
def gans(clusters):
    """A GAN conditioned on the three classes, and an unconditional one of class "a" (as the paper trains one per class)."""
    embeddings, labels = clusters
    return train_latent_gan(embeddings, labels, CLASSES, TINY_GAN), train_latent_gan(
        embeddings[labels == 0], None, None, TINY_GAN
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A folder holding an (untrained) nf2vec model with embeddings of SIZE values."""
    folder = tmp_path_factory.mktemp("model")
    save_model(folder, new_model(TINY_NF2VEC, random_family()))
    return folder


def _nearest(samples, data, labels):
    """Mean distance from each sample to its nearest data row, and that row's label per sample."""
    distances = np.linalg.norm(samples[:, None] - data[None], axis=2)
    return distances.min(axis=1).mean(), labels[distances.argmin(axis=1)]


# --- latent GAN, classifier, transfer ---------------------------------------------------------------


def test_gan_samples_lie_near_the_data_and_in_the_asked_class(clusters, gans):
    embeddings, labels = clusters
    conditional, unconditional = gans
    noise = np.random.default_rng(1).normal(embeddings.mean(0), embeddings.std(0), size=(200, SIZE))
    noise_distance, _ = _nearest(noise, embeddings, labels)
    distance, _ = _nearest(conditional.sample(200, seed=1), embeddings, labels)
    assert distance < 0.25 * noise_distance, (distance, noise_distance)
    for label, name in enumerate(CLASSES):
        distance, nearest = _nearest(conditional.sample(100, seed=2, class_name=name), embeddings, labels)
        assert distance < 0.25 * noise_distance and (nearest == label).mean() >= 0.9, (name, distance, nearest)
    first = embeddings[labels == 0]
    own = np.linalg.norm(first[:, None] - first[None], axis=2) + np.diag(np.full(len(first), np.inf))
    distance, _ = _nearest(unconditional.sample(200, seed=1), first, labels[labels == 0])
    assert distance < 1.5 * own.min(axis=1).mean(), (
        distance,
        own.min(axis=1).mean(),
    )  # as near as the data to each other
    assert conditional.training["steps"] == TINY_GAN.steps and np.isfinite(conditional.training["final_wasserstein"])


def test_gan_samples_are_the_same_for_the_same_seed(gans):
    conditional, unconditional = gans
    samples = conditional.sample(50, seed=3)
    assert samples.shape == (50, SIZE) and samples.dtype == np.float32
    np.testing.assert_array_equal(conditional.sample(50, seed=3), samples)
    assert not np.array_equal(conditional.sample(50, seed=4), samples)
    np.testing.assert_array_equal(conditional.sample(5, 3, "b"), conditional.sample(5, 3, "b"))
    np.testing.assert_array_equal(unconditional.sample(5, 3), unconditional.sample(5, 3))


def test_gan_refuses_classes_it_does_not_make(clusters, gans):
    conditional, unconditional = gans
    with pytest.raises(NeuralShapesError, match=r"unknown class 'sofa' \(this GAN makes a, b, c\)"):
        conditional.sample(1, seed=0, class_name="sofa")
    with pytest.raises(NeuralShapesError, match="unconditional"):
        unconditional.sample(1, seed=0, class_name="a")
    embeddings, labels = clusters
    with pytest.raises(NeuralShapesError, match="class 'd' has no embeddings"):
        train_latent_gan(embeddings, labels, [*CLASSES, "d"], TINY_GAN)


def test_classifier_separates_clusters(clusters):
    embeddings, labels = clusters
    order = np.random.default_rng(2).permutation(len(labels))
    train, held_out = order[:120], order[120:]
    classifier = train_classifier(embeddings[train], labels[train], CLASSES, TINY_CLASSIFIER)
    probabilities = classifier.predict(embeddings[held_out])
    assert probabilities.shape == (60, 3) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    assert (probabilities.argmax(axis=1) == labels[held_out]).mean() >= 0.95
    assert classifier.class_names == tuple(CLASSES) and classifier.training["train_accuracy"] >= 0.95


def test_transfer_learns_a_linear_map():
    rng = np.random.default_rng(3)
    matrix, offset = rng.normal(size=(SIZE, SIZE)) / 4, rng.normal(size=SIZE)
    inputs = rng.normal(size=(400, SIZE)).astype(np.float32)
    targets = (inputs @ matrix + offset).astype(np.float32)
    transfer = train_transfer(inputs[:300], targets[:300], TINY_TRANSFER)
    error = ((transfer.apply(inputs[300:]) - targets[300:]) ** 2).mean()
    assert error < 0.1 * targets.var(axis=0).mean(), error
    assert transfer.training["mse"] < 0.1 * transfer.training["identity_mse"]
    with pytest.raises(NeuralShapesError, match="pair up"):
        train_transfer(inputs[:10], targets[:9], TINY_TRANSFER)


# --- files in the model folder -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def networks(clusters, gans):
    """One trained network of each task, with its save and load functions and an output to compare."""
    embeddings, labels = clusters
    classifier = train_classifier(embeddings, labels, CLASSES, TINY_CLASSIFIER)
    transfer = train_transfer(embeddings, embeddings[::-1].copy(), TINY_TRANSFER)
    return {
        "gan": (gans[0], save_gan, load_gan, lambda gan: gan.sample(20, seed=5, class_name="c")),
        "classifier": (classifier, save_classifier, load_classifier, lambda net: net.predict(embeddings)),
        "transfer": (transfer, save_transfer, load_transfer, lambda net: net.apply(embeddings)),
    }


@pytest.mark.parametrize("task", ["gan", "classifier", "transfer"])
def test_saved_networks_load_back_alike(networks, model_dir, task):
    network, save, load, output = networks[task]
    path = save(model_dir, network)
    assert path == model_dir / f"{task}.safetensors"
    loaded = load(model_dir, load_model(model_dir))
    np.testing.assert_array_equal(output(loaded), output(network))
    assert loaded.settings == network.settings and loaded.training == network.training
    data = load_tensors(path, "unreadable")
    assert data["format"] == f"neural-shapes/nf2vec-{task}" and data["version"] == 1
    assert data["family_id"] == random_family().family_id and data["embedding_size"] == SIZE
    assert data["class_names"] == (CLASSES if task != "transfer" else [])


@pytest.mark.parametrize("task", ["gan", "classifier", "transfer"])
def test_bad_network_files_are_refused_in_one_line(networks, model_dir, tmp_path, task):
    network, save, load, _ = networks[task]
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    model = load_model(folder)
    path = save(folder, network)
    good = path.read_bytes()
    other_family = new_model(TINY_NF2VEC, random_family(seed=1))
    other_size = new_model(
        Nf2vecConfig(encoder_hidden=(8,), embedding_size=8, decoder_hidden=8, decoder_layers=3), random_family()
    )
    data = load_tensors(path, "unreadable")
    cases = [
        (lambda: path.write_bytes(b"PK\x03\x04 garbage"), model, f"not a valid nf2vec {task} file"),
        (
            lambda: save_tensors(path, {**data, "format": "neural-shapes/nf2vec-other"}),
            model,
            f"not an nf2vec {task} file",
        ),
        (lambda: path.write_bytes(good), other_family, "family"),
        (lambda: path.write_bytes(good), other_size, "embeddings of size 16"),
        (lambda: save_tensors(path, {**data, "config": {**data["config"], "unknown": 1}}), model, "do not fit"),
        (lambda: save_tensors(path, {**data, "state": {**data["state"], "network": {}}}), model, "do not fit"),
        (lambda: path.unlink(), model, "cannot read file"),
    ]
    for spoil, against, message in cases:
        spoil()
        with pytest.raises(NeuralShapesError, match=message) as error:
            load(folder, against)
        assert "\n" not in str(error.value) and str(path) in str(error.value)
    small = tmp_path / "small"
    save_model(small, other_size)
    with pytest.raises(NeuralShapesError, match="makes 8"):
        save(small, network)


# --- partial meshes -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """Four meshes, two chairs and two tables, and their cut copies made with seed 0."""
    root = tmp_path_factory.mktemp("partials")
    make_collection(root / "coll", 4, seed=0, classes=["chair", "table"])
    make_partials(root / "coll", root / "parts")
    return root


def _area(mesh):
    return float(mesh.area_faces.sum())


def test_cuts_keep_the_stated_area_and_only_source_faces(collection):
    manifest = read_partials_manifest(collection / "parts")
    assert [item.cut for item in manifest.items] == ["plane", "sphere", "plane", "sphere"]
    for item in manifest.items:
        source = trimesh.load_mesh(collection / "coll" / item.source, process=False)
        partial = trimesh.load_mesh(collection / "parts" / item.file, process=False)
        kept = _area(partial) / _area(source)
        low, high = KEPT_BY_PLANE if item.cut == "plane" else KEPT_BY_SPHERE
        assert low <= kept <= high and kept == pytest.approx(item.kept_area, abs=1e-5), item
        source_triangles = {triangle.tobytes() for triangle in source.triangles}
        assert all(triangle.tobytes() in source_triangles for triangle in partial.triangles), item
        assert not partial.is_watertight  # an open mesh: a partial observation


def test_partials_are_reproducible_resumable_and_listed(collection, tmp_path):
    first = tmp_path / "first"
    make_partials(collection / "coll", first, per_mesh=2, limit=2)
    written = {path.name: path.stat().st_mtime_ns for path in first.glob("*.ply")}
    assert len(written) == 4
    manifest = make_partials(collection / "coll", first, per_mesh=2)  # resumes: the first files stay as they are
    assert {name: (first / name).stat().st_mtime_ns for name in written} == written
    again = make_partials(collection / "coll", tmp_path / "again", per_mesh=2)
    for item in again.items:
        assert (first / item.file).read_bytes() == (tmp_path / "again" / item.file).read_bytes()
    for name in ("chair_0000-cut0.ply", "table_0000-cut0.ply"):  # cut 0 does not depend on --per-mesh
        assert (first / name).read_bytes() == (collection / "parts" / name).read_bytes()
    data = json.loads((first / "manifest.json").read_text())
    assert data["format"] == "neural-shapes/partials" and data["version"] == 1
    assert data["source_collection"] == os.path.relpath(collection / "coll", first)
    assert [
        (entry["file"], entry["source"], entry["class"], entry["label"], entry["cut"]) for entry in data["items"][:4]
    ] == [
        ("chair_0000-cut0.ply", "chair_0000.ply", "chair", 0, "plane"),
        ("chair_0000-cut1.ply", "chair_0000.ply", "chair", 0, "sphere"),
        ("table_0000-cut0.ply", "table_0000.ply", "table", 1, "sphere"),
        ("table_0000-cut1.ply", "table_0000.ply", "table", 1, "plane"),
    ]
    assert len(manifest.items) == 8 and read_partials_manifest(first) == manifest


def test_partials_refuse_what_they_cannot_cut(collection, tmp_path):
    with pytest.raises(NeuralShapesError, match="cannot read the manifest"):
        make_partials(tmp_path, tmp_path / "out")
    with pytest.raises(NeuralShapesError, match="not a neural-shapes collection manifest"):
        make_partials(collection / "parts", tmp_path / "out")
    two_halves = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], [[0, 1, 2], [0, 2, 3]])
    with pytest.raises(NeuralShapesError, match="55%-85% of the surface area"):
        cut_faces(two_halves, "plane", np.random.default_rng(0))
    (tmp_path / "manifest.json").write_text('{"format": "neural-shapes/partials", "version": 1, "items": [{}]}')
    with pytest.raises(NeuralShapesError, match="malformed partials manifest"):
        read_partials_manifest(tmp_path)


# --- commands ---------------------------------------------------------------------------------------------


def test_make_partials_command(collection, tmp_path):
    result = run_cli("make-partials", collection / "coll", "-o", tmp_path / "parts", "--limit", "3", "--seed", "0")
    assert result.returncode == 0, result.stderr
    assert "3 partial meshes (2 plane, 1 sphere cuts)" in result.stdout
    for name in ("chair_0000-cut0.ply", "table_0000-cut0.ply", "chair_0001-cut0.ply"):
        assert (tmp_path / "parts" / name).read_bytes() == (collection / "parts" / name).read_bytes()


@pytest.fixture(scope="module")
def trained_shapes(collection):
    """The four meshes and their cut copies fitted quickly, and an nf2vec model trained briefly on the former."""
    root = collection
    fit = run_cli(
        "fit",
        root / "coll",
        root / "parts",
        "-o",
        root / "fitted",
        "--samples",
        "8192",
        "--max-steps",
        "100",
        "--resolution",
        "32",
    )
    assert fit.returncode == 0, fit.stderr
    for kind in ("shapes", "pshapes"):
        (root / kind).mkdir()
    for path in (root / "fitted").glob("*.h5"):
        path.rename(root / ("pshapes" if "-cut" in path.stem else "shapes") / path.name)
    nf2vec = run_cli(
        "train-nf2vec",
        root / "shapes",
        "--collection",
        root / "coll",
        "-o",
        root / "model",
        "--steps",
        "5",
        "--shapes-per-step",
        "4",
        "--points-per-shape",
        "256",
        "--samples-per-shape",
        "4096",
        "--samples-cache",
        root / "cache.h5",
        "--embedding-size",
        str(SIZE),
        "--encoder-hidden",
        "16",
        "--decoder-hidden",
        "16",
        "--decoder-layers",
        "3",
    )
    assert nf2vec.returncode == 0, nf2vec.stderr
    return root


def test_train_commands_end_to_end(trained_shapes):
    root = trained_shapes
    model_dir = root / "model"
    model = load_model(model_dir)
    shapes = [read_shape(path) for path in sorted((root / "shapes").glob("*.h5"))]

    gan = run_cli("train-gan", root / "shapes", "--model", model_dir, "--collection", root / "coll", "--steps", "20")
    assert gan.returncode == 0, gan.stderr
    assert (
        "latent GAN (conditional on 2 classes) on 4 embeddings, 20 steps" in gan.stdout and "step 20/20" in gan.stderr
    )
    assert load_gan(model_dir, model).sample(3, seed=0, class_name="table").shape == (3, SIZE)

    classifier = run_cli(
        "train-classifier", root / "shapes", "--model", model_dir, "--collection", root / "coll", "--epochs", "30"
    )
    assert classifier.returncode == 0, classifier.stderr
    assert "classifier of 2 classes on 4 embeddings, train accuracy" in classifier.stdout
    loaded = load_classifier(model_dir, model)
    assert loaded.class_names == ("chair", "table") and loaded.predict(embed(model, shapes)).shape == (4, 2)

    completion = run_cli(
        "train-completion",
        "--partials",
        root / "pshapes",
        "--complete",
        root / "shapes",
        "--model",
        model_dir,
        "--partials-manifest",
        root / "parts" / "manifest.json",
        "--epochs",
        "30",
    )
    assert completion.returncode == 0, completion.stderr
    assert "completion network on 4 pairs" in completion.stdout
    partials = [read_shape(path) for path in sorted((root / "pshapes").glob("*.h5"))]
    assert load_transfer(model_dir, model).apply(embed(model, partials)).shape == (4, SIZE)


def test_shapes_without_classes_or_pairs_are_refused(trained_shapes):
    root = trained_shapes
    partials = [read_shape(path) for path in sorted((root / "pshapes").glob("*.h5"))]
    with pytest.raises(
        NeuralShapesError, match="shape 'chair_0000-cut0': its source mesh 'chair_0000-cut0.ply' has no class"
    ):
        shape_classes(partials, read_manifest(root / "coll"))
    no_pairs = run_cli(
        "train-completion",
        "--partials",
        root / "pshapes",
        "--complete",
        root / "pshapes",
        "--model",
        root / "model",
        "--partials-manifest",
        root / "parts",
    )
    assert no_pairs.returncode == 1 and "no (partial, complete) pairs" in no_pairs.stderr
    assert len(no_pairs.stderr.strip().splitlines()) == 1, no_pairs.stderr
