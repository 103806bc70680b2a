"""Dense and sparse marching cubes on exact SDFs and fitted nets: geometry, agreement (sparse == dense), references."""

import functools

import mcubes
import numpy as np
import pytest
import trimesh
import warp as wp
from scipy.spatial import cKDTree
from skimage import measure

from backend.meshes.extraction import extract_mesh
from backend.shapes.architecture import Architecture
from backend.shapes.frame import Similarity
from backend.shapes.network import evaluate_sdf
from kernels.device import init_warp
from kernels.marching_cubes import extract_dense, extract_neural, extract_sparse, sample_grid
from kernels.mlp_eval import evaluate_with_gradient, neural_field
from tests.fields import BOX, FIELD, SPHERE, TORUS, AnalyticField, fit_sphere, params

init_warp()
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


def _assert_same_surface(sparse, dense):
    """The same vertices (to float32 round-off), the same triangles with the same winding, the same normals."""
    assert sparse.vertices.shape == dense.vertices.shape and sparse.faces.shape == dense.faces.shape
    if len(dense.faces) == 0:
        return
    distance, match = cKDTree(dense.vertices).query(sparse.vertices)
    assert distance.max() < 1e-6
    assert np.abs(sparse.normals - dense.normals[match]).max() < 1e-5  # duplicate positions share their normal

    def triangles(mesh):  # corner coordinates, each triangle from its smallest rotation (keeps the winding), sorted
        corners = mesh.vertices[mesh.faces].reshape(-1, 9).astype(np.float64).tolist()
        return np.array(sorted(min(row[3 * k :] + row[: 3 * k] for k in range(3)) for row in corners))

    assert np.abs(triangles(sparse) - triangles(dense)).max() < 1e-6


def _check_mesh(mesh, exact):
    surface = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    assert surface.is_watertight and surface.is_winding_consistent
    assert surface.volume > 0  # outward faces
    welded = trimesh.Trimesh(mesh.vertices, mesh.faces, process=True)
    assert len(welded.vertices) == len(mesh.vertices)
    assert np.abs(exact(mesh.vertices)).max() <= VOXEL / 2
    # Vertex normals point the way of the faces around them (box edges: axis normal vs averaged faces).
    assert (np.sum(mesh.normals * surface.vertex_normals, axis=1) > 0.0).all()


@pytest.mark.parametrize("name", SHAPES)
def test_dense_and_sparse_on_exact_sdfs(name, device):
    row = SHAPES[name]
    p = wp.array(params(row), dtype=wp.vec4, device=device)
    dense = extract_dense(FIELD, p, 0, RESOLUTION)
    sparse = extract_sparse(FIELD, p, 0, RESOLUTION, lipschitz=1.0)
    local = extract_sparse(FIELD, p, 0, RESOLUTION)
    exact = lambda v: _exact(*row, v.astype(np.float64))  # noqa: E731
    for mesh in (dense, sparse, local):
        _check_mesh(mesh, exact)
    assert abs(len(sparse.faces) - len(dense.faces)) <= 0.005 * len(dense.faces)
    assert _hausdorff(sparse.vertices, dense.vertices) < VOXEL / 2
    _assert_same_surface(sparse, dense)
    _assert_same_surface(local, dense)
    assert local.evaluations < 0.5 * dense.evaluations
    if name == "sphere":
        assert (
            np.sum(
                sparse.normals * sparse.vertices / np.linalg.norm(sparse.vertices, axis=1, keepdims=True), axis=1
            ).min()
            > 0.999
        )


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
    sparse = extract_sparse(FIELD, p, 0, RESOLUTION, lipschitz=0.25)
    assert sparse.bound_scale > 1.0
    assert len(sparse.faces) == len(dense.faces)
    _assert_same_surface(sparse, dense)


def test_hopeless_bound_falls_back_to_dense():
    p = wp.array(params(SHAPES["torus"]), dtype=wp.vec4, device="cpu")
    sparse = extract_sparse(FIELD, p, 0, RESOLUTION, lipschitz=0.02)  # 0.08 after both retries: still far too small
    assert sparse.bound_scale == np.inf
    _assert_same_surface(sparse, extract_dense(FIELD, p, 0, RESOLUTION))


def test_fitted_net_sparse_equals_dense(device):
    arch, weights = Architecture(), fit_sphere()
    dense = extract_neural(arch, weights, 96, "dense", device=device)
    sparse = extract_neural(arch, weights, 96, "sparse", device=device)
    assert abs(len(sparse.faces) - len(dense.faces)) <= 0.005 * len(dense.faces)
    assert _hausdorff(sparse.vertices, dense.vertices) < 1.0 / 95
    _assert_same_surface(sparse, dense)
    assert sparse.evaluations < 0.25 * 96**3
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
    _, gradients = evaluate_with_gradient(arch, [weights], normalised.vertices.astype(np.float32))
    assert np.allclose(source.vertex_normals, gradients / np.linalg.norm(gradients, axis=1, keepdims=True), atol=1e-5)
    reference = extract_mesh(arch, weights, 64, method="reference")
    assert _hausdorff(reference.vertices, normalised.vertices) < 1.0 / 63


def test_bad_requests():
    arch, weights = Architecture(), fit_sphere()
    with pytest.raises(ValueError, match="method"):
        extract_mesh(arch, weights, 64, method="octree")
    with pytest.raises(ValueError, match="resolution"):
        extract_mesh(arch, weights, 4)
    nowhere = [(w, b + (10.0 if i == len(weights) - 1 else 0.0)) for i, (w, b) in enumerate(weights)]
    empty = extract_neural(arch, nowhere, 32)
    assert empty.faces.shape == (0, 3) and empty.vertices.shape == (0, 3)
    for method in ("sparse", "dense", "reference"):  # a shape with no surface is an empty mesh, not an error
        assert len(extract_mesh(arch, nowhere, 32, method=method).faces) == 0


def test_clip_radius_intersects_the_field_with_a_sphere():
    p = wp.array(params((BOX, 0.8, 0.8, 0.8)), dtype=wp.vec4, device="cpu")  # corners reach 1.39 > 0.7
    dense = extract_dense(FIELD, p, 0, RESOLUTION, clip_radius=0.7)
    sparse = extract_sparse(FIELD, p, 0, RESOLUTION, clip_radius=0.7)
    for mesh in (dense, sparse):
        radius = np.linalg.norm(mesh.vertices, axis=1)
        assert np.abs(radius - 0.7).max() < VOXEL / 2  # the box is cut down to the sphere
        assert np.sum(mesh.normals * mesh.vertices / radius[:, None], axis=1).min() > 0.999
    _assert_same_surface(sparse, dense)


# --- sparse == dense on hard fields ---------------------------------------------------------------
# Exact fields with one parameter row pair per shape: (kind, a, b, c), (x, y, z, r).
#   kind 0, thin shell: |(|p| - a)| - b (walls thinner than a voxel give many tiny pieces);
#   kind 1, steep bump: (|p| - a) * (1 + b exp(-|p - q|^2 / c^2)), q = (x, y, z): same zero set as the
#     sphere, gradient norm up to 1 + b within c of q (narrower than a coarse cell);
#   kind 2, sphere plus a speck: min(|p| - a, |p - q| - r), a separate component smaller than a voxel.
SHELL, STEEP, SPECK = 0.0, 1.0, 2.0


@wp.func
def _hard(q: wp.vec4, s: wp.vec4, p: wp.vec3) -> float:
    sphere = wp.length(p) - q[1]
    if q[0] == 0.0:
        return wp.abs(sphere) - q[2]
    d = p - wp.vec3(s[0], s[1], s[2])
    if q[0] == 1.0:
        return sphere * (1.0 + q[2] * wp.exp(-wp.dot(d, d) / (q[3] * q[3])))
    return wp.min(sphere, wp.length(d) - s[3])


@wp.func
def _hard_value(params: wp.array2d(dtype=wp.vec4), s: int, p: wp.vec3) -> float:
    return _hard(params[s, 0], params[s, 1], p)


@wp.func
def _hard_value_and_gradient(params: wp.array2d(dtype=wp.vec4), s: int, p: wp.vec3) -> wp.vec4:
    # Central differences (step 1e-4) along each axis.
    g = wp.vec3()
    for axis in range(3):
        step = wp.vec3()
        step[axis] = 1.0e-4
        g[axis] = (_hard(params[s, 0], params[s, 1], p + step) - _hard(params[s, 0], params[s, 1], p - step)) / 2.0e-4
    return wp.vec4(_hard_value(params, s, p), g[0], g[1], g[2])


HARD = AnalyticField(key="hard", value=_hard_value, value_and_gradient=_hard_value_and_gradient)
HARD_SHAPES = {
    "thin shell": ((SHELL, 0.6, 0.2 * VOXEL, 0.0), (0.0, 0.0, 0.0, 0.0)),
    "steep bump": ((STEEP, 0.6, 8.0, 0.04), (0.6, 0.0, 0.0, 0.0)),
    "speck": ((SPECK, 0.5, 0.0, 0.0), (0.31, -0.47, 0.62, 0.6 * VOXEL)),
    "nothing inside the box": ((SPECK, 3.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.1)),
    "nothing at all": ((SHELL, 5.0, 0.5, 0.0), (0.0, 0.0, 0.0, 0.0)),
    "cut by the box walls": ((SPECK, 1.15, 0.0, 0.0), (5.0, 5.0, 5.0, 0.1)),
}


@pytest.mark.parametrize("name", HARD_SHAPES)
def test_sparse_equals_dense_on_hard_fields(name, device):
    p = wp.array(np.asarray(HARD_SHAPES[name], dtype=np.float32).reshape(1, 2, 4), dtype=wp.vec4, device=device)
    for resolution in (RESOLUTION, 97):
        dense = extract_dense(HARD, p, 0, resolution)
        sparse = extract_sparse(HARD, p, 0, resolution)
        _assert_same_surface(sparse, dense)
        assert sparse.evaluations < 0.5 * dense.evaluations
    if name.startswith("nothing"):
        assert len(sparse.faces) == 0
    if name in ("thin shell", "speck"):
        assert (
            len(trimesh.Trimesh(dense.vertices, dense.faces).split(only_watertight=False)) > 1
        )  # tiny pieces, all found


@pytest.mark.parametrize("resolution", [9, 10, 33, 64, 65, 100])
def test_sparse_equals_dense_at_any_resolution(resolution):
    p = wp.array(params(SHAPES["torus"]), dtype=wp.vec4, device="cpu")
    _assert_same_surface(extract_sparse(FIELD, p, 0, resolution), extract_dense(FIELD, p, 0, resolution))
    _assert_same_surface(
        extract_sparse(FIELD, p, 0, resolution, lower=-0.8, upper=0.9),
        extract_dense(FIELD, p, 0, resolution, lower=-0.8, upper=0.9),
    )


@functools.cache
def _fit_thin_shell(steps: int = 300, seed: int = 0):
    """A default-architecture net fitted briefly to a shell of thickness 0.04 (two voxels at 64^3): rough, thin-walled."""
    import torch

    from backend.shapes.architecture import random_family
    from backend.shapes.network import BatchedSDF

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = BatchedSDF(Architecture(), [random_family(Architecture(), seed).initial_weights])
    optimiser = torch.optim.Adam(model.parameters(), 2e-3)
    for _ in range(steps):
        uniform = rng.uniform(-1, 1, (2048, 3))
        directions = rng.normal(size=(2048, 3))
        near = directions / np.linalg.norm(directions, axis=1, keepdims=True) * (0.5 + rng.laplace(0, 0.02, (2048, 1)))
        points = torch.from_numpy(np.concatenate([uniform, near]).astype(np.float32))[None]
        loss = (model(points) - ((points.norm(dim=-1) - 0.5).abs() - 0.02)).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    torch.set_num_threads(threads)
    return model.shape_weights(0)


def test_thin_walled_fitted_net_sparse_equals_dense():
    arch, weights = Architecture(), _fit_thin_shell()
    for resolution in (64, 128):
        dense = extract_neural(arch, weights, resolution, "dense", clip_radius=0.95)
        sparse = extract_neural(arch, weights, resolution, "sparse", clip_radius=0.95)
        assert len(dense.faces) > 1000 and sparse.bound_scale == 1.0
        _assert_same_surface(sparse, dense)


def test_too_small_local_margin_is_caught_by_the_checks():
    field = neural_field(Architecture())
    p = wp.array(field.pack([_fit_thin_shell()]), dtype=field.param_dtype, device="cpu")
    sparse = extract_sparse(field, p, 0, 96, clip_radius=0.95, margin=0.5)  # bounds of about 1: too small here
    assert sparse.bound_scale > 1.0
    _assert_same_surface(sparse, extract_dense(field, p, 0, 96, clip_radius=0.95))
