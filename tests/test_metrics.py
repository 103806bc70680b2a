"""Quality figures (backend.meshes.metrics) on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from backend.meshes.metrics import reconstruction_quality, surface_error, surface_samples
from backend.shapes.architecture import Architecture


def test_surface_samples_lie_on_the_surface_uniformly(sphere_mesh):
    points = surface_samples(sphere_mesh.vertices, sphere_mesh.faces, 50_000, seed=2)
    assert points.shape == (50_000, 3) and points.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(points, axis=1), 0.5, atol=3e-4)
    assert abs(np.mean(points[:, 2] > 0) - 0.5) < 0.01  # area-uniform: half on each side


def test_chamfer_and_fscore_known_answers(sphere_mesh):
    points = surface_samples(sphere_mesh.vertices, sphere_mesh.faces, 50_000, seed=3)
    same = reconstruction_quality(sphere_mesh, points, sphere_mesh)
    assert same.fscore == 1.0 and same.chamfer < 1e-5  # point-to-surface: no sampling gap
    shifted = sphere_mesh.copy()
    shifted.apply_scale(1.04)  # every point 0.02 away, beyond the 0.01 threshold
    far = reconstruction_quality(sphere_mesh, points, shifted)
    assert far.fscore == 0.0 and far.chamfer == pytest.approx(0.04, abs=0.003)
    empty = reconstruction_quality(sphere_mesh, points, trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=int)))
    assert empty.fscore == 0.0 and empty.chamfer == float("inf")


def test_surface_error_of_an_exact_plane_net():
    """A 1-hidden-layer ReLU net computing f(x) = relu(z) - relu(-z) = z: surface error on z = 0.01 is 0.01."""
    arch = Architecture(hidden_layers=1, width=2, output_activation="none")
    weights = [
        (np.array([[0, 0, 1], [0, 0, -1]], np.float32), np.zeros(2, np.float32)),
        (np.array([[1, -1]], np.float32), np.zeros(1, np.float32)),
    ]
    points = np.random.default_rng(0).uniform(-1, 1, size=(1000, 3)).astype(np.float32)
    points[:, 2] = 0.01
    assert surface_error(arch, weights, points) == pytest.approx(0.01, rel=1e-5)
