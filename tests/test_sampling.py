"""Importance sampling (backend.meshes.sampling): the drawn distances follow density exp(-beta |sdf|)."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy import integrate, stats

from backend.fitting.batched import FitSettings, OpenMeshes, sample_shape
from backend.meshes.loading import normalise_mesh
from backend.meshes.sampling import (
    MAX_SIGN_JUMPS,
    SHELL_HALF_THICKNESS,
    as_shell,
    encloses_volume,
    importance_samples,
    sign_jump_share,
)
from kernels.mesh_sdf import MeshDistance, SignMethod

BETA = 60.0


def test_sphere_distance_histogram_matches_target(sphere_mesh):
    """For a sphere of radius R the signed distance d of a draw has density ~ exp(-beta |d|) (R + d)^2."""
    radius = 0.5
    distance = MeshDistance(sphere_mesh.vertices, sphere_mesh.faces, device="cpu")
    samples = importance_samples(
        distance, 200_000, sign=SignMethod.PSEUDO_NORMAL, beta=BETA, uniform_fraction=0.0, seed=3
    )
    d = np.linalg.norm(samples.points.astype(np.float64), axis=1) - radius
    np.testing.assert_allclose(samples.sdf, d, atol=5e-4)  # returned values are the signed distances

    density = lambda x: np.exp(-BETA * np.abs(x)) * (radius + x) ** 2  # noqa: E731
    total = integrate.quad(density, -radius, 0.5, points=[0.0])[0]
    cdf = np.vectorize(
        lambda x: (
            integrate.quad(density, -radius, min(max(x, -radius), 0.5), points=[0.0] if x > 0 else None)[0] / total
        )
    )
    grid = np.linspace(-0.15, 0.15, 301)
    table = cdf(grid)
    result = stats.kstest(d, lambda x: np.interp(x, grid, table, left=0.0, right=1.0))
    assert result.statistic < 0.005, result


def test_box_matches_paper_pool_resampling(box_mesh, rng):
    """Against the paper's own scheme (weighted resampling of a big uniform pool), on a box with edges and corners."""
    distance = MeshDistance(box_mesh.vertices, box_mesh.faces, device="cpu")
    ours = importance_samples(distance, 100_000, sign=SignMethod.PSEUDO_NORMAL, beta=BETA, uniform_fraction=0.0, seed=5)
    pool = rng.uniform(-1, 1, size=(2_000_000, 3)).astype(np.float32)
    pool_sdf = distance.distance(pool, SignMethod.PSEUDO_NORMAL)
    weights = np.exp(-BETA * np.abs(pool_sdf))
    reference = pool_sdf[rng.choice(len(pool), size=100_000, p=weights / weights.sum())]
    assert stats.ks_2samp(ours.sdf, reference).statistic < 0.015
    # Positions too: the distribution over faces (x extent) agrees.
    assert (
        stats.ks_2samp(
            ours.points[:, 0], pool[rng.choice(len(pool), size=100_000, p=weights / weights.sum()), 0]
        ).statistic
        < 0.015
    )


def test_uniform_fraction_and_signs_on_messy_mesh(sphere_mesh):
    faces = sphere_mesh.faces.copy()
    faces[::7] = faces[::7, ::-1]  # flipped faces: pseudo normals would lie, the winding number does not
    distance = MeshDistance(sphere_mesh.vertices, faces, device="cpu")
    samples = importance_samples(
        distance, 20_000, sign=SignMethod.WINDING_NUMBER, beta=BETA, uniform_fraction=0.25, seed=1
    )
    exact = np.linalg.norm(samples.points, axis=1) - 0.5
    sure = np.abs(exact) > 0.03
    assert np.mean(np.sign(samples.sdf[sure]) == np.sign(exact[sure])) > 0.999
    # About a quarter lie far from the surface (uniform in the cube); the importance part has almost none there.
    far = np.mean(np.abs(exact) > 0.2)
    assert 0.2 < far < 0.27
    assert np.abs(samples.points).max() <= 1.0


def test_bad_arguments(sphere_mesh):
    distance = MeshDistance(sphere_mesh.vertices, sphere_mesh.faces, device="cpu")
    with pytest.raises(ValueError):
        importance_samples(distance, 0, sign=SignMethod.NONE)
    with pytest.raises(ValueError):
        importance_samples(distance, 10, sign=SignMethod.NONE, uniform_fraction=1.5)


def _without_top(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    return trimesh.Trimesh(mesh.vertices, mesh.faces[mesh.face_normals[:, 2] < 0.5])


@pytest.mark.parametrize(
    "mesh, solid",
    [
        (trimesh.creation.box(extents=(1.0, 1.0, 1.0)), True),
        (_without_top(trimesh.creation.box(extents=(1.0, 1.0, 1.0))), True),  # an open box still holds a solid
        (trimesh.creation.box(extents=(1.6, 0.012, 1.6)), False),  # a plate thinner than a 128^3 grid's cell
        (
            trimesh.Trimesh([[-0.8, -0.8, 0], [0.8, -0.8, 0], [0.8, 0.8, 0], [-0.8, 0.8, 0]], [[0, 1, 2], [0, 2, 3]]),
            False,
        ),
    ],
)
def test_a_mesh_with_no_inside_is_told_from_a_solid_and_made_a_shell(mesh, solid):
    """A closed box, and one with its top cut away, hold a solid (winding numbers); a single sheet does not,
    nor does a closed plate too thin for the extraction grid to see, and their shell samples are the unsigned distance less the half thickness."""
    samples = importance_samples(MeshDistance(mesh.vertices, mesh.faces), 20_000, sign=SignMethod.WINDING_NUMBER)
    assert encloses_volume(samples) == solid
    shell = as_shell(samples, 0.01)
    np.testing.assert_allclose(shell.sdf, np.abs(samples.sdf) - 0.01, atol=1e-7)


def _sphere_cut_above(height: float) -> trimesh.Trimesh:
    """A radius-0.8 sphere with the faces above ``height`` removed: an opening whose size grows as it drops."""
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.8)
    return trimesh.Trimesh(sphere.vertices, sphere.faces[sphere.triangles_center[:, 2] < height])


@pytest.mark.parametrize(
    "mesh, solid",
    [
        (trimesh.creation.icosphere(subdivisions=4, radius=0.8), True),
        (_sphere_cut_above(0.75), True),  # a small hole: the winding number's membrane across it is small
        (_sphere_cut_above(0.0), False),  # a hemisphere: its membrane is half the shape's surface again
    ],
)
def test_a_sign_that_jumps_across_large_openings_makes_the_mesh_a_shell(mesh, solid):
    """A winding-number sign flips across an opening where nothing is: nearby samples then differ by more
    than their distance, which no distance field does. Closed or with a small hole, a mesh stays a solid;
    a hemisphere (whose signed fit would be a half ball, lid and all) is fitted as a shell around its faces,
    unless the solid reading is asked for."""
    samples = importance_samples(MeshDistance(mesh.vertices, mesh.faces), 60_000, sign=SignMethod.WINDING_NUMBER)
    assert encloses_volume(samples)  # all three hold some inside, so that alone would sign them all
    share = sign_jump_share(samples)
    assert (share < MAX_SIGN_JUMPS / 2) if solid else (share > MAX_SIGN_JUMPS * 1.5)
    normalised = normalise_mesh(mesh.vertices, mesh.faces, name="cut sphere")
    data = sample_shape(normalised, FitSettings(samples=60_000))
    assert data.shell == (0.0 if solid else SHELL_HALF_THICKNESS)
    as_solid = sample_shape(normalised, FitSettings(samples=60_000, open_meshes=OpenMeshes.SOLID))
    assert as_solid.shell == 0.0  # asked for (nf2vec's inputs): the solid the winding number closes


def test_an_exact_distance_field_never_jumps(sphere_mesh):
    """Signs from pseudo normals on a closed sphere: the samples are a distance field, 1-Lipschitz."""
    distance = MeshDistance(sphere_mesh.vertices, sphere_mesh.faces)
    assert sign_jump_share(importance_samples(distance, 30_000, sign=SignMethod.PSEUDO_NORMAL)) == 0.0
