"""Dense and sparse marching cubes on exact SDFs and a fitted net: geometry, agreement, references."""

import mcubes
import numpy as np
import pytest
import trimesh
import warp as wp
from scipy.spatial import cKDTree
from skimage import measure

from backend.extraction import extract_mesh
from backend.mesh_loading import Similarity
from backend.network import Architecture, evaluate_sdf
from kernels.device import init_warp
from kernels.marching_cubes import extract_dense, extract_neural, extract_sparse, sample_grid
from kernels.mlp_eval import LipschitzBound, evaluate
from tests.fields import BOX, FIELD, SPHERE, TORUS, fit_sphere, params

init_warp()
DEVICES = ["cpu"] + (["cuda:0"] if wp.is_cuda_available() else [])
SHAPES = {
    "sphere": (SPHERE, 0.6, 0.0, 0.0),
    "box": (BOX, 0.5, 0.3, 0.4),
    "torus": (TORUS, 0.55, 0.2, 0.0),
}
RESOLUTION = 64
VOXEL = 2.0 / (RESOLUTION - 1)


def _exact(kind, a, b, c, p):
    if kind == SPHERE:
        return np.linalg.norm(p, axis=1) - a
    if kind == BOX:
        d = np.abs(p) - [a, b, c]
        return np.linalg.norm(np.maximum(d, 0), axis=1) + np.minimum(d.max(axis=1), 0)
    ring = np.linalg.norm(p[:, :2], axis=1) - a
    return np.hypot(ring, p[:, 2]) - b


def _hausdorff(a: np.ndarray, b: np.ndarray) -> float:
    return max(cKDTree(b).query(a)[0].max(), cKDTree(a).query(b)[0].max())


def _check_mesh(mesh, exact):
    surface = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    assert surface.is_watertight and surface.is_winding_consistent
    assert surface.volume > 0  # outward faces
    welded = trimesh.Trimesh(mesh.vertices, mesh.faces, process=True)
    assert len(welded.vertices) == len(mesh.vertices)
    assert np.abs(exact(mesh.vertices)).max() <= VOXEL / 2
    # Vertex normals point the way of the faces around them (box edges: axis normal vs averaged faces).
    assert (np.sum(mesh.normals * surface.vertex_normals, axis=1) > 0.0).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", SHAPES)
def test_dense_and_sparse_on_exact_sdfs(name, device):
    row = SHAPES[name]
    p = wp.array(params(row), dtype=wp.vec4, device=device)
    dense = extract_dense(FIELD, p, 0, RESOLUTION)
    sparse = extract_sparse(FIELD, p, 0, RESOLUTION, LipschitzBound(1.0, 1.0, 0.1))
    exact = lambda v: _exact(*row, v.astype(np.float64))  # noqa: E731
    for mesh in (dense, sparse):
        _check_mesh(mesh, exact)
    assert abs(len(sparse.faces) - len(dense.faces)) <= 0.005 * len(dense.faces)
    assert _hausdorff(sparse.vertices, dense.vertices) < VOXEL / 2
    if name == "sphere":
        assert np.sum(sparse.normals * sparse.vertices / np.linalg.norm(sparse.vertices, axis=1, keepdims=True), axis=1).min() > 0.999


def test_same_field_as_pymcubes_and_scikit_image():
    p = wp.array(params(SHAPES["torus"]), dtype=wp.vec4, device="cpu")
    grid = sample_grid(FIELD, p, 0, RESOLUTION).numpy()
    warp_mesh = extract_dense(FIELD, p, 0, RESOLUTION)
    mc_vertices, mc_faces = mcubes.marching_cubes(grid, 0.0)
    sk_vertices, sk_faces, _, _ = measure.marching_cubes(grid, 0.0)
    for vertices, faces in ((mc_vertices, mc_faces), (sk_vertices, sk_faces)):
        vertices = vertices * VOXEL - 1.0
        assert abs(len(faces) - len(warp_mesh.faces)) <= 0.01 * len(faces)
        assert _hausdorff(vertices, warp_mesh.vertices) < VOXEL / 2


def test_too_small_lipschitz_bound_is_caught_by_the_hole_check():
    p = wp.array(params(SHAPES["sphere"]), dtype=wp.vec4, device="cpu")
    dense = extract_dense(FIELD, p, 0, RESOLUTION)
    sparse = extract_sparse(FIELD, p, 0, RESOLUTION, LipschitzBound(0.25, 0.25, 0.1))
    assert sparse.lipschitz.near > 0.25
    assert len(sparse.faces) == len(dense.faces)


@pytest.mark.parametrize("device", DEVICES)
def test_fitted_net_sparse_equals_dense(device):
    arch, weights = Architecture(), fit_sphere()
    dense = extract_neural(arch, weights, 96, "dense", device=device)
    sparse = extract_neural(arch, weights, 96, "sparse", device=device)
    assert abs(len(sparse.faces) - len(dense.faces)) <= 0.005 * len(dense.faces)
    assert _hausdorff(sparse.vertices, dense.vertices) < 1.0 / 95
    # Vertices lie on the network's zero level set (linear interpolation error only).
    assert np.abs(evaluate_sdf(arch, weights, sparse.vertices)).max() < 2.0 / 95


def test_extract_mesh_in_source_frame_with_normals():
    arch, weights = Architecture(), fit_sphere()
    transform = Similarity(scale=0.5, centre=np.array([10.0, -2.0, 3.0]))
    normalised = extract_mesh(arch, weights, 64)
    source = extract_mesh(arch, weights, 64, transform=transform)
    assert np.allclose(source.vertices, transform.to_source(normalised.vertices))
    radius = np.linalg.norm(source.vertices - transform.centre, axis=1)
    assert np.abs(radius - 1.0).max() < 0.1  # a sphere of radius 0.5 normalised = 1.0 in source units
    outward = (source.vertices - transform.centre) / radius[:, None]
    assert (np.sum(source.vertex_normals * outward, axis=1) > 0.0).all()  # a rough net: outward, not quite radial
    _, gradients = evaluate(arch, [weights], normalised.vertices.astype(np.float32), gradient=True)
    assert np.allclose(source.vertex_normals, gradients / np.linalg.norm(gradients, axis=1, keepdims=True), atol=1e-5)
    reference = extract_mesh(arch, weights, 64, method="reference")
    assert _hausdorff(reference.vertices, normalised.vertices) < 1.0 / 63


def test_bad_requests():
    arch, weights = Architecture(), fit_sphere()
    with pytest.raises(ValueError, match="method"):
        extract_mesh(arch, weights, 64, method="octree")
    with pytest.raises(ValueError, match="resolution"):
        extract_mesh(arch, weights, 4)
    empty = extract_neural(arch, [(w, b + (10.0 if i == len(weights) - 1 else 0.0)) for i, (w, b) in enumerate(weights)], 32)
    assert empty.faces.shape == (0, 3) and empty.vertices.shape == (0, 3)


def test_clip_radius_intersects_the_field_with_a_sphere():
    p = wp.array(params((BOX, 0.8, 0.8, 0.8)), dtype=wp.vec4, device="cpu")  # corners reach 1.39 > 0.7
    for mesh in (extract_dense(FIELD, p, 0, RESOLUTION, clip_radius=0.7), extract_sparse(FIELD, p, 0, RESOLUTION, clip_radius=0.7)):
        radius = np.linalg.norm(mesh.vertices, axis=1)
        assert np.abs(radius - 0.7).max() < VOXEL / 2  # the box is cut down to the sphere
        assert np.sum(mesh.normals * mesh.vertices / radius[:, None], axis=1).min() > 0.999
