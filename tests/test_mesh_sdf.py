"""Signed distance to meshes (kernels.mesh_sdf) against exact SDFs and on messy meshes."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from kernels.mesh_sdf import MeshDistance, SignMethod

SIGNED = [SignMethod.PSEUDO_NORMAL, SignMethod.WINDING_NUMBER]


def sphere_sdf(p: np.ndarray, radius: float = 0.5) -> np.ndarray:
    return np.linalg.norm(p, axis=1) - radius


def box_sdf(p: np.ndarray, half: np.ndarray) -> np.ndarray:
    q = np.abs(p) - half
    return np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0)


def torus_sdf(p: np.ndarray, major: float, minor: float) -> np.ndarray:
    ring = np.linalg.norm(p[:, :2], axis=1) - major
    return np.hypot(ring, p[:, 2]) - minor


@pytest.mark.parametrize("sign", SIGNED)
def test_sphere_box_torus_match_exact_sdf(sign, sphere_mesh, box_mesh, rng):
    torus = trimesh.creation.torus(0.6, 0.2, major_sections=256, minor_sections=128)
    cases = [
        (sphere_mesh, lambda p: sphere_sdf(p), 5e-4),
        (box_mesh, lambda p: box_sdf(p, np.array([0.5, 0.3, 0.4])), 1e-5),
        (torus, lambda p: torus_sdf(p, 0.6, 0.2), 1e-3),
    ]
    points = rng.uniform(-1, 1, size=(20000, 3)).astype(np.float32)
    for mesh, exact, tolerance in cases:
        got = MeshDistance(mesh.vertices, mesh.faces, device="cpu").distance(points, sign)
        np.testing.assert_allclose(got, exact(points.astype(np.float64)), atol=tolerance)


def test_unsigned_and_max_dist(sphere_mesh):
    distance = MeshDistance(sphere_mesh.vertices, sphere_mesh.faces, device="cpu")
    points = np.array([[0, 0, 0], [0.9, 0, 0], [0, 0.55, 0]], dtype=np.float32)
    np.testing.assert_allclose(distance.distance(points, SignMethod.NONE), [0.5, 0.4, 0.05], atol=5e-4)
    # Beyond max_dist the query reports max_dist itself, a lower bound.
    np.testing.assert_allclose(distance.distance(points, SignMethod.NONE, max_dist=0.1), [0.1, 0.1, 0.05], atol=5e-4)
    assert distance.distance(np.zeros((0, 3)), SignMethod.NONE).shape == (0,)


def test_winding_number_signs_mesh_with_holes(sphere_mesh, rng):
    """Remove two caps of the sphere: inside stays inside, outside stays outside away from the holes."""
    centres = sphere_mesh.triangles_center
    keep = (centres[:, 2] < 0.45) & (centres[:, 0] > -0.45)
    holed = trimesh.Trimesh(sphere_mesh.vertices, sphere_mesh.faces[keep])
    assert not holed.is_watertight
    points = rng.uniform(-1, 1, size=(20000, 3))
    exact = sphere_sdf(points)
    # Points close to the holes are genuinely ambiguous: test the rest.
    far_from_holes = (points[:, 2] < 0.3) & (points[:, 0] > -0.3)
    got = MeshDistance(holed.vertices, holed.faces, device="cpu").distance(points, SignMethod.WINDING_NUMBER)
    sure = far_from_holes & (np.abs(exact) > 0.02)
    assert np.mean(np.sign(got[sure]) == np.sign(exact[sure])) == 1.0


def test_winding_number_signs_flipped_and_duplicated_faces(sphere_mesh, rng):
    faces = sphere_mesh.faces.copy()
    flip = rng.uniform(size=len(faces)) < 0.15
    faces[flip] = faces[flip][:, ::-1]
    faces = np.concatenate([faces, faces[:300]])
    points = rng.uniform(-1, 1, size=(20000, 3))
    exact = sphere_sdf(points)
    got = MeshDistance(sphere_mesh.vertices, faces, device="cpu").distance(points, SignMethod.WINDING_NUMBER)
    sure = np.abs(exact) > 0.05
    assert np.mean(np.sign(got[sure]) == np.sign(exact[sure])) > 0.999
    np.testing.assert_allclose(np.abs(got), np.abs(exact), atol=5e-4)


def test_winding_number_signs_overlapping_components(rng):
    """Two interpenetrating closed boxes: the union's inside, where pseudo normals go wrong."""
    a = trimesh.creation.box(extents=(1.0, 0.4, 0.4))
    b = trimesh.creation.box(extents=(0.4, 1.0, 0.4))
    both = trimesh.util.concatenate([a, b])
    points = rng.uniform(-0.6, 0.6, size=(20000, 3))
    inside = a.contains(points) | b.contains(points)
    got = MeshDistance(both.vertices, both.faces, device="cpu").distance(points, SignMethod.WINDING_NUMBER)
    assert np.mean((got < 0) == inside) > 0.999
