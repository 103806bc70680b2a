"""Meshes whose faces are inconsistently oriented or inside out (closed or with holes, one piece or many)
are reoriented before sampling, so the signs a fit learns do not depend on how the faces were wound
(issue 16, item 0)."""

import numpy as np
import pytest
import trimesh

from backend.fitting.batched import sign_method_for
from backend.meshes.loading import normalise_mesh, oriented_outward
from kernels.mesh_sdf import MeshDistance, SignMethod


def with_flipped_faces(mesh: trimesh.Trimesh, fraction: float, seed: int = 0) -> np.ndarray:
    faces = np.asarray(mesh.faces).copy()
    flip = np.random.default_rng(seed).random(len(faces)) < fraction
    faces[flip] = faces[flip][:, ::-1]
    return faces


@pytest.mark.parametrize("fraction", [0.3, 1.0], ids=["some faces flipped", "inside out"])
def test_a_closed_mesh_is_reoriented_and_signs_are_exact(sphere_mesh, fraction):
    faces = with_flipped_faces(sphere_mesh, fraction)
    assert not trimesh.Trimesh(sphere_mesh.vertices, faces, process=False).is_winding_consistent or fraction == 1.0
    mesh = normalise_mesh(sphere_mesh.vertices, faces, name="sphere")
    assert mesh.clean  # closed, consistent, outward: the exact pseudo-normal signs apply
    points = np.random.default_rng(1).uniform(-1, 1, size=(4000, 3)).astype(np.float32)
    signed = MeshDistance(mesh.vertices, mesh.faces).distance(points, SignMethod.PSEUDO_NORMAL)
    expected = np.linalg.norm(points, axis=1) - 0.9  # the normalised sphere has radius 0.9
    far = np.abs(expected) > 0.01  # away from the faceted surface, the sign is unambiguous
    assert (np.sign(signed[far]) == np.sign(expected[far])).all()


def test_two_bodies_each_turned_outward(sphere_mesh):
    other = sphere_mesh.copy()
    other.apply_translation((2.0, 0, 0))
    both = trimesh.util.concatenate([sphere_mesh, other])
    faces = np.asarray(both.faces).copy()
    faces[len(sphere_mesh.faces) :] = faces[len(sphere_mesh.faces) :, ::-1]  # the second body inside out
    mesh = normalise_mesh(both.vertices, faces, name="two")
    assert trimesh.Trimesh(mesh.vertices, mesh.faces).volume > 0
    assert sign_method_for(mesh) == SignMethod.WINDING_NUMBER  # two bodies: not 'clean'
    centres = mesh.transform.to_normalised(np.array([[0.0, 0, 0], [2.0, 0, 0]]))
    offsets = np.random.default_rng(2).uniform(-0.05, 0.05, size=(50, 3))
    inside = (centres[:, None] + offsets[None]).reshape(-1, 3).astype(np.float32)
    assert (MeshDistance(mesh.vertices, mesh.faces).distance(inside, sign_method_for(mesh)) < 0).all()


@pytest.mark.parametrize("inverted", [False, True], ids=["flipped faces", "flipped faces, inside out"])
def test_a_mesh_with_holes_is_reoriented_and_winding_numbers_are_right(inverted):
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    rng = np.random.default_rng(0)
    faces = with_flipped_faces(sphere, 0.3)[rng.random(len(sphere.faces)) > 0.02]  # 2% of the faces missing
    if inverted:
        faces = faces[:, ::-1]
    vertices = sphere.vertices + (50.0, 0, 0)  # far from the origin: orientation must not depend on it
    mesh = normalise_mesh(vertices, faces, name="holes")
    assert not mesh.clean and sign_method_for(mesh) == SignMethod.WINDING_NUMBER
    points = rng.uniform(-1, 1, size=(4000, 3)).astype(np.float32)
    signed = MeshDistance(mesh.vertices, mesh.faces).distance(points, SignMethod.WINDING_NUMBER)
    expected = np.linalg.norm(points, axis=1) - 0.9
    far = np.abs(expected) > 0.05
    assert (np.sign(signed[far]) == np.sign(expected[far])).mean() > 0.99


def test_a_large_mesh_comes_out_consistent_and_a_small_inverted_body_is_turned():
    sphere = trimesh.creation.icosphere(subdivisions=6)  # 81,920 faces: face keys pass int32
    mesh = oriented_outward(trimesh.Trimesh(sphere.vertices, with_flipped_faces(sphere, 0.3), process=False))
    assert mesh.is_winding_consistent and mesh.volume > 0
    small = trimesh.creation.icosphere(subdivisions=2, radius=0.2)
    small.apply_translation((3.0, 0, 0))
    small.invert()  # consistent, inward: the whole mesh still has a positive volume
    both = trimesh.util.concatenate([sphere, small])
    assert both.is_winding_consistent and both.volume > 0
    fixed = oriented_outward(both)
    assert all(body.volume > 0 for body in fixed.split(only_watertight=False))
