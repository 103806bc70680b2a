"""Fitting from surface points alone (backend.fitting.from_points): a sphere is recovered from a point cloud
with no inside/outside information, and from a partial scan with normals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh

from backend.errors import NeuralShapesError
from backend.fitting.from_points import SurfaceFitSettings, fit_surface_points
from backend.meshes.extraction import extract_mesh
from backend.meshes.point_clouds import load_point_cloud
from backend.shapes.architecture import random_family
from backend.shapes.network import evaluate_sdf
from backend.shapes.shape_file import read_shape
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

RADIUS = 0.6
QUICK = SurfaceFitSettings(steps=1000)


def sphere_points(count: int, seed: int = 0) -> np.ndarray:
    points = np.random.default_rng(seed).normal(size=(count, 3))
    return RADIUS * points / np.linalg.norm(points, axis=1, keepdims=True)


def test_level_set_fit_recovers_a_sphere():
    family = random_family()
    result = fit_surface_points(family, sphere_points(5000), settings=QUICK)
    assert result.surface_error_estimate < 0.01
    mesh = extract_mesh(family.architecture, result.weights, 64, method="dense")
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert abs(radii.mean() - RADIUS) < 0.01 and np.abs(radii - RADIUS).max() < 0.05
    inside, outside = evaluate_sdf(family.architecture, result.weights, np.array([[0, 0, 0], [0.85, 0, 0]]))
    assert inside < 0 < outside  # signed, though only surface points were given


def test_partial_scan_with_normals_passes_through_the_observed_side():
    points = sphere_points(5000)
    seen = points[points[:, 2] > 0]  # the upper half, as one depth camera above would see it
    family = random_family()
    result = fit_surface_points(family, seen, normals=seen / RADIUS, complete=False, settings=QUICK)
    values = evaluate_sdf(family.architecture, result.weights, seen)
    assert np.abs(values).mean() < 0.01
    above, centre = evaluate_sdf(family.architecture, result.weights, np.array([[0, 0, 0.8], [0, 0, 0.3]]))
    assert centre < 0 < above


@pytest.mark.parametrize(
    ("points", "normals", "message"),
    [
        (np.zeros((0, 3)), None, "at least one finite point"),
        (np.array([[0.0, np.nan, 0.0]]), None, "at least one finite point"),
        (np.array([[5.0, 0.0, 0.0]]), None, "normalised frame"),
        (np.zeros((2, 3)), np.zeros((2, 3)), "non-zero vector per point"),
    ],
)
def test_bad_input_is_refused(points, normals, message):
    with pytest.raises(NeuralShapesError, match=message):
        fit_surface_points(random_family(), points, normals=normals, settings=SurfaceFitSettings(steps=1))


def test_cli_fit_points_writes_shapes_in_the_cloud_frame(tmp_path):
    cloud = 2.0 * sphere_points(4000) + np.array([5.0, 0.0, -1.0])  # radius 1.2 around (5, 0, -1)
    np.savetxt(tmp_path / "ball.xyz", cloud)
    normals = sphere_points(4000) / RADIUS
    header = (
        "ply\nformat ascii 1.0\nelement vertex 4000\n"
        + "".join(f"property float {k}\n" for k in ("x", "y", "z", "nx", "ny", "nz"))
        + "end_header\n"
    )
    (tmp_path / "scan.ply").write_text(
        header + "\n".join(" ".join(map(str, row)) for row in np.hstack([cloud, normals])) + "\n"
    )
    (tmp_path / "bad.xyz").write_text("1 2\n3 4\n")
    result = run_cli(
        "fit-points",
        tmp_path / "ball.xyz",
        tmp_path / "scan.ply",
        tmp_path / "bad.xyz",
        "-o",
        tmp_path / "out",
        "--family",
        "random",
        "--steps",
        "600",
        "--resolution",
        "48",
        "--json",
    )
    assert result.returncode == 1 and "bad.xyz: expected 3 or 6 numbers per line" in result.stderr
    rows = {Path(row["source"]).name: row for row in json.loads(result.stdout)}
    assert rows["scan.ply"]["normals"] and not rows["ball.xyz"]["normals"]
    for name in ("ball", "scan"):
        assert rows[f"{name}.{'xyz' if name == 'ball' else 'ply'}"]["chamfer"] < 0.05
        shape = read_shape(tmp_path / "out" / f"{name}.h5")
        assert shape.family_id == random_family().family_id
        mesh = trimesh.load(tmp_path / "out" / f"{name}.obj")
        assert np.abs(np.linalg.norm(mesh.vertices - [5.0, 0.0, -1.0], axis=1) - 1.2).mean() < 0.05


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ("", ".xyz", "no points"),
        ("1 2 nan\n", ".xyz", "NaN or infinite"),
        ("1 2 3\n", ".pts", "unknown point cloud format"),
    ],
)
def test_bad_point_clouds_are_refused(tmp_path, content, suffix, message):
    path = tmp_path / f"cloud{suffix}"
    path.write_text(content)
    with pytest.raises(NeuralShapesError, match=message):
        load_point_cloud(path)
