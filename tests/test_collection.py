"""The procedural training collection: closed shapes per class, determinism, the folder and its manifest, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh

from backend.datasets.generators import GENERATORS, MIN_FACES
from backend.datasets.procedural import (
    CLASSES,
    MANIFEST_NAME,
    make_collection,
    make_shape,
    read_manifest,
)
from backend.errors import NeuralShapesError
from tests.conftest import run_cli

MAX_FACES = 30_000


@pytest.mark.parametrize("class_name", CLASSES)
def test_every_class_is_closed_outward_and_moderate(class_name):
    for seed in range(3):
        mesh = make_shape(class_name, seed)
        assert mesh.is_watertight and mesh.is_winding_consistent, (class_name, seed)
        assert mesh.volume > 0, (class_name, seed)
        assert MIN_FACES <= len(mesh.faces) <= MAX_FACES, (class_name, seed, len(mesh.faces))
        assert np.allclose(mesh.bounds.mean(axis=0), 0, atol=1e-9)
        assert mesh.body_count == 1, (class_name, seed)  # what the fitting pipeline counts as clean


@pytest.mark.parametrize("class_name", CLASSES)
def test_same_seed_same_mesh_other_seed_other_mesh(class_name):
    first, again, other = make_shape(class_name, 11), make_shape(class_name, 11), make_shape(class_name, 12)
    assert np.array_equal(first.vertices, again.vertices) and np.array_equal(first.faces, again.faces)
    assert first.vertices.shape != other.vertices.shape or not np.allclose(first.vertices, other.vertices)


@pytest.mark.parametrize("class_name", ["chair", "vase", "organic"])
def test_messy_shapes_have_defects(class_name):
    for seed in range(4):
        mesh = make_shape(class_name, seed, messy=True)
        duplicated = len(np.unique(np.sort(mesh.faces, axis=1), axis=0)) < len(mesh.faces)
        assert duplicated or not mesh.is_watertight or not mesh.is_winding_consistent, (class_name, seed)


def test_unknown_class_and_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown shape class 'sofa'"):
        make_shape("sofa", 0)
    for kwargs in (
        {"count": 0},
        {"count": 2, "classes": ["chair", "sofa"]},
        {"count": 2, "classes": ["chair", "chair"]},
        {"count": 2, "messy_fraction": 1.5},
    ):
        with pytest.raises(ValueError):
            make_collection(tmp_path / "bad", **kwargs)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    folder = tmp_path_factory.mktemp("collection")
    return folder, make_collection(folder, 24, seed=3, messy_fraction=1.0)


def test_collection_files_labels_and_balance(collection):
    folder, manifest = collection
    assert manifest.classes == CLASSES and len(manifest.items) == 24
    assert sorted(p.name for p in folder.iterdir()) == sorted([MANIFEST_NAME, *(i.file for i in manifest.items)])
    counts = [sum(i.class_name == name for i in manifest.items) for name in CLASSES]
    assert max(counts) - min(counts) <= 1  # classes take turns
    assert [i.file for i in manifest.items[:12]] == [f"{name}_0000.ply" for name in CLASSES] + ["chair_0001.ply"]
    for item in manifest.items:
        assert CLASSES[item.label] == item.class_name and item.messy
        mesh = trimesh.load(folder / item.file, process=False)
        assert len(mesh.faces) == item.faces > 0
    on_disk = json.loads((folder / MANIFEST_NAME).read_text())
    assert on_disk["format"] == "neural-shapes-collection" and on_disk["version"] == 2 and on_disk["seed"] == 3
    assert on_disk["orientation"] == "mixed"
    assert on_disk["items"][0] == {
        "file": "chair_0000.ply",
        "class": "chair",
        "label": 0,
        "seed": manifest.items[0].seed,
        "messy": True,
        "faces": manifest.items[0].faces,
    }
    assert read_manifest(folder) == manifest
    assert manifest.mesh_paths(["vase"]) == [folder / "vase_0000.ply", folder / "vase_0001.ply"]
    assert len(manifest.mesh_paths(exclude=["vase", "mug"])) == 20


def test_rerun_is_a_no_op(collection):
    folder, manifest = collection
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}
    assert make_collection(folder, 24, seed=3, messy_fraction=1.0) == manifest
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()} == before


def test_interrupted_run_resumes_to_the_same_bytes(tmp_path):
    def stop_after_three(done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_collection(tmp_path / "resumed", 8, seed=1, classes=["vase", "blob", "csg"], progress=stop_after_three)
    assert sorted(p.name for p in (tmp_path / "resumed").iterdir()) == [
        "blob_0000.ply",
        "csg_0000.ply",
        "vase_0000.ply",
    ]
    # A file made with other settings (here: messy) under the same name is not taken for this run's.
    (tmp_path / "resumed" / "csg_0000.ply").write_bytes(make_shape("csg", 5, messy=True).export(file_type="ply"))
    make_collection(tmp_path / "resumed", 8, seed=1, classes=["vase", "blob", "csg"])
    make_collection(tmp_path / "fresh", 8, seed=1, classes=["vase", "blob", "csg"])
    for fresh in (tmp_path / "fresh").iterdir():
        assert (tmp_path / "resumed" / fresh.name).read_bytes() == fresh.read_bytes(), fresh.name


def _up_and_facing(mesh: trimesh.Trimesh, seed: int, class_name: str) -> tuple[float, float]:
    """Tilt of the shape's Z axis from +Z and its yaw from the unturned shape's, in degrees, found by
    matching the rotated shape's principal axes to the unturned one (same generator draws)."""
    plain = GENERATORS[class_name](np.random.default_rng(seed))
    a, b = plain.vertices - plain.vertices.mean(0), mesh.vertices - mesh.vertices.mean(0)
    u, _, vt = np.linalg.svd(a.T @ b)  # Kabsch: b ~ a @ R with R = u @ vt (same vertex order)
    rotation = u @ vt
    tilt = np.degrees(np.arccos(np.clip(rotation[2, 2], -1, 1)))
    yaw = np.degrees(np.arctan2(rotation[0, 1], rotation[0, 0]))
    return float(tilt), float(yaw)


@pytest.mark.parametrize("orientation", ["canonical", "yaw", "full", "mixed"])
def test_orientations(orientation):
    tilts, yaws = zip(
        *(_up_and_facing(make_shape("chair", seed, orientation=orientation), seed, "chair") for seed in range(12))
    )
    if orientation == "canonical":
        assert max(tilts) < 1e-3 and max(map(abs, yaws)) <= 15.01 and len({round(y) for y in yaws}) > 3
    elif orientation == "yaw":
        assert max(tilts) < 1e-3 and max(map(abs, yaws)) > 60
    elif orientation == "full":
        assert min(tilts) > 1  # any rotation: never exactly upright
    else:  # the meta family's mix: most upright, some not
        assert 0 < sum(t > 1 for t in tilts) < len(tilts)


def test_orientation_is_recorded_and_resumes_only_its_own_files(tmp_path):
    folder = tmp_path / "c"
    mixed = make_collection(folder, 3, seed=0, classes=["vase", "mug", "car"])
    canonical = make_collection(folder, 3, seed=0, classes=["vase", "mug", "car"], orientation="canonical")
    assert mixed.orientation == "mixed" and canonical.orientation == "canonical"
    assert read_manifest(folder).orientation == "canonical"
    fresh = make_collection(tmp_path / "fresh", 3, seed=0, classes=["vase", "mug", "car"], orientation="canonical")
    for item in fresh.items:  # the canonical run rewrote the mixed run's files
        assert (folder / item.file).read_bytes() == (tmp_path / "fresh" / item.file).read_bytes()
    with pytest.raises(ValueError, match="unknown orientation 'sideways'"):
        make_collection(folder, 3, orientation="sideways")


def test_version_1_manifests_read_as_mixed(tmp_path):
    folder = tmp_path / "c"
    make_collection(folder, 2, seed=0, classes=["vase", "mug"])
    data = json.loads((folder / MANIFEST_NAME).read_text())
    data["version"] = 1
    del data["orientation"]
    (folder / MANIFEST_NAME).write_text(json.dumps(data))
    assert read_manifest(folder).orientation == "mixed"


def test_a_shape_does_not_depend_on_count_or_class_list(tmp_path):
    small = make_collection(tmp_path / "small", 2, seed=7, classes=["mug", "car"], messy_fraction=0.5)
    large = make_collection(tmp_path / "large", 6, seed=7, classes=["car", "rocket", "mug"], messy_fraction=0.5)
    for name in ("mug_0000.ply", "car_0000.ply"):
        assert (tmp_path / "small" / name).read_bytes() == (tmp_path / "large" / name).read_bytes()
    assert [i.label for i in small.items] == [0, 1] and [i.label for i in large.items] == [0, 1, 2, 0, 1, 2]


def test_read_manifest_rejects_bad_manifests(tmp_path):
    folder = tmp_path / "c"
    make_collection(folder, 3, seed=0, classes=["chair", "table", "lamp"])
    path = folder / MANIFEST_NAME
    good = json.loads(path.read_text())

    def rejected(data, cause: str) -> str:
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        with pytest.raises(NeuralShapesError) as error:
            read_manifest(path)
        message = str(error.value)
        assert message.startswith(str(path)) and cause in message and "\n" not in message, message
        return message

    rejected("{not json", "not a JSON manifest")
    rejected({**good, "format": "other"}, "not a neural-shapes collection manifest")
    rejected({**good, "version": 99}, "manifest version 99")
    rejected({**good, "items": [{**good["items"][0], "label": 2}]}, "chair_0000.ply has label 2")
    rejected({**good, "items": [{**good["items"][0], "faces": "many"}]}, "malformed manifest")
    rejected({**good, "items": [{**good["items"][0], "file": "../chair_0000.ply"}]}, "not a file name")
    (folder / "table_0000.ply").unlink()
    rejected(good, "1 mesh file(s) missing, the first table_0000.ply")
    with pytest.raises(NeuralShapesError, match="cannot read the manifest"):
        read_manifest(tmp_path / "nowhere" / MANIFEST_NAME)


def test_cli_make_collection(tmp_path):
    result = run_cli(
        "make-collection",
        tmp_path / "c",
        "--count",
        "6",
        "--seed",
        "2",
        "--classes",
        "chair,vase",
        "--messy-fraction",
        "0.5",
    )
    assert result.returncode == 0, result.stderr
    assert "chair" in result.stdout and "vase" in result.stdout and "6 meshes" in result.stderr
    manifest = read_manifest(tmp_path / "c")
    assert manifest.classes == ("chair", "vase") and len(manifest.items) == 6 and manifest.seed == 2

    bad = run_cli("make-collection", tmp_path / "d", "--count", "3", "--classes", "chair,sofa")
    assert bad.returncode == 1 and "error:" in bad.stderr and "sofa" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "d").exists()
