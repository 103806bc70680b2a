# Marching cubes on a neural (or any Warp) SDF field: dense grid or sparse Lipschitz octree.
#
# Dense: the field is sampled on every node of an r^3 grid over a box (the cube [-1, 1]^3 for neural
# shapes) and ``warp.geometry.IsoSurfaceMarchingCubes`` extracts the zero level set: cost follows the
# volume. Sparse: ``warp.geometry.sparse_marching_cubes`` refines an octree from the whole box down to
# the same grid, keeping only cells whose centre value is within ``lipschitz * half diagonal`` of zero,
# then runs marching cubes on those cells: cost follows the surface area. Both place vertices on the
# same grid edges, so with a valid Lipschitz bound they give the same surface.
#
# A neural SDF is not exactly 1-Lipschitz: the bound comes from ``kernels.mlp_eval.lipschitz_bound``
# (sampled gradient norms times a margin). If the sparse surface is empty or has a hole away from the
# box walls, a cell may have been wrongly pruned: the bound is doubled and the extraction redone.
#
# Both return welded vertices (one per crossed grid edge), faces wound counter-clockwise seen from
# outside (normals point from negative to positive values) and unit normals from the analytic gradient.
# Sign convention: negative inside.

from dataclasses import dataclass

import numpy as np
import warp as wp
import warp.geometry

from kernels.device import default_device
from kernels.mlp_eval import LipschitzBound, launch_field, lipschitz_bound, neural_field

MAX_RESOLUTION = 1024
HOLE_RETRIES = 2  # times the Lipschitz bound is doubled when the sparse surface has a hole
EXACT_SDF = LipschitzBound(near=1.0, far=1.0, band=0.1)  # the bounds of a true signed distance function


@dataclass
class SurfaceMesh:
    """vertices (v, 3) float32 and normals (v, 3) float32 in the field's frame; faces (f, 3) int32."""

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    lipschitz: LipschitzBound | None = None  # the bounds the sparse extraction used in the end


@wp.kernel(enable_backward=False)
def _grid_points_kernel(lower: wp.vec3, spacing: float, resolution: int, offset: int, out_points: wp.array(dtype=wp.vec3)):
    # Node ``offset + tid`` of the grid, written to ``out_points[tid]``.
    i = offset + wp.tid()
    x = i / (resolution * resolution)
    y = (i / resolution) % resolution
    z = i % resolution
    out_points[wp.tid()] = lower + spacing * wp.vec3(float(x), float(y), float(z))


@wp.kernel(enable_backward=False)
def _clip_kernel(points: wp.array(dtype=wp.vec3), radius: float, values: wp.array(dtype=float), gradients: wp.array(dtype=wp.vec3)):
    # max(f, |p| - radius): the field intersected with a sphere (gradient of the chosen term).
    i = wp.tid()
    p = points[i]
    sphere = wp.length(p) - radius
    if sphere > values[i]:
        values[i] = sphere
        if gradients.shape[0] > 0:
            gradients[i] = wp.normalize(p)


def _evaluate(field, params: wp.array, shape: int, points: wp.array, values: wp.array, gradients: wp.array | None, clip_radius: float | None) -> None:
    """Field values (and gradients) at device points, intersected with the sphere ``clip_radius`` if given."""
    launch_field(field, params, points, values, gradients, first_shape=shape)
    if clip_radius is not None:
        no_gradients = wp.empty(0, dtype=wp.vec3, device=points.device)
        wp.launch(_clip_kernel, dim=points.shape[0], inputs=[points, float(clip_radius)], outputs=[values, no_gradients if gradients is None else gradients], device=points.device)


def _check(resolution: int, lower: float, upper: float) -> None:
    if not 2 <= resolution <= MAX_RESOLUTION:
        raise ValueError(f"resolution must be between 2 and {MAX_RESOLUTION}, got {resolution}")
    if not upper > lower:
        raise ValueError(f"the box must have upper > lower, got [{lower}, {upper}]")


def sample_grid(
    field, params: wp.array, shape: int, resolution: int, lower: float = -1.0, upper: float = 1.0, clip_radius: float | None = None
) -> wp.array:
    """Field values on the r^3 nodes of the box [lower, upper]^3: a (r, r, r) float32 device array indexed [x, y, z].

    Nodes are generated and evaluated about a million at a time (so memory stays at the field itself).
    """
    _check(resolution, lower, upper)
    device = params.device
    total = resolution**3
    values = wp.empty((resolution, resolution, resolution), dtype=float, device=device)
    flat = values.flatten()
    slab = min(total, 1 << 20)
    points = wp.empty(slab, dtype=wp.vec3, device=device)
    spacing = (upper - lower) / (resolution - 1)
    for start in range(0, total, slab):
        count = min(slab, total - start)
        wp.launch(_grid_points_kernel, dim=count, inputs=[wp.vec3(lower, lower, lower), spacing, resolution, start], outputs=[points], device=device)
        _evaluate(field, params, shape, points[:count], flat[start : start + count], None, clip_radius)
    return values


def extract_dense(
    field, params: wp.array, shape: int = 0, resolution: int = 256, lower: float = -1.0, upper: float = 1.0, clip_radius: float | None = None
) -> SurfaceMesh:
    """Zero level set of shape ``shape`` of a field from every node of the r^3 grid over [lower, upper]^3.

    ``clip_radius``: intersect the field with that sphere around the origin (drops stray far surfaces).
    """
    values = sample_grid(field, params, shape, resolution, lower, upper, clip_radius)
    vertices, indices = warp.geometry.IsoSurfaceMarchingCubes.extract(values, 0.0, lower=(lower,) * 3, upper=(upper,) * 3)
    return _with_normals(field, params, shape, vertices, indices, clip_radius)


@wp.kernel(enable_backward=False)
def _rescale_kernel(near: float, far: float, band: float, values: wp.array(dtype=float)):
    # phi(f): f / near within the band, slope 1 / far beyond; monotone, zero-preserving, and
    # 1-Lipschitz along any path when |grad f| <= near where |f| <= band and <= far elsewhere.
    i = wp.tid()
    f = values[i]
    a = wp.abs(f)
    if a <= band:
        values[i] = f / near
    else:
        values[i] = wp.sign(f) * (band / near + (a - band) / far)


def extract_sparse(
    field, params: wp.array, shape: int = 0, resolution: int = 256, lipschitz: LipschitzBound = EXACT_SDF,
    lower: float = -1.0, upper: float = 1.0, clip_radius: float | None = None,
) -> SurfaceMesh:
    """The same surface as :func:`extract_dense` from a Lipschitz octree, at a cost that follows the area.

    ``lipschitz`` must bound the field's gradient norm over the box (``near`` where |f| <= ``band``,
    ``far`` elsewhere). The octree sees phi(f), a monotone rescaling that is 1-Lipschitz under those
    bounds and linear within the band, so leaf crossings interpolate exactly as the dense grid does
    (as long as crossing-cell corners lie within the band). If the result is empty or has a hole away
    from the box walls, both bounds are doubled (up to ``HOLE_RETRIES`` times).
    """
    _check(resolution, lower, upper)
    if not (lipschitz.near > 0 and lipschitz.far > 0 and lipschitz.band >= 0):
        raise ValueError(f"Lipschitz bounds must be positive, got {lipschitz}")
    device = params.device

    def evaluate(points: wp.array) -> wp.array:
        values = wp.empty(points.shape[0], dtype=float, device=device)
        _evaluate(field, params, shape, points, values, None, clip_radius)  # clipping keeps the bounds (|grad| 1)
        wp.launch(_rescale_kernel, dim=points.shape[0], inputs=[lipschitz.near, lipschitz.far, lipschitz.band], outputs=[values], device=device)
        return values

    spacing = (upper - lower) / (resolution - 1)
    for attempt in range(HOLE_RETRIES + 1):
        vertices, indices = warp.geometry.sparse_marching_cubes(
            evaluate, resolution, resolution, resolution, lower=(lower,) * 3, upper=(upper,) * 3,
            lipschitz_bound=float(2**attempt), device=device,
        )
        mesh = _with_normals(field, params, shape, vertices, indices, clip_radius)
        if attempt == HOLE_RETRIES or (len(mesh.faces) and not _has_interior_hole(mesh, lower, upper, spacing)):
            break
    mesh.lipschitz = LipschitzBound(lipschitz.near * 2**attempt, lipschitz.far * 2**attempt, lipschitz.band)
    return mesh


def _with_normals(field, params: wp.array, shape: int, vertices: wp.array, indices: wp.array, clip_radius: float | None) -> SurfaceMesh:
    """Host mesh with unit normals from the field's analytic gradient at the vertices."""
    n = vertices.shape[0]
    normals = np.zeros((n, 3), dtype=np.float32)
    if n:
        values = wp.empty(n, dtype=float, device=params.device)
        gradients = wp.empty(n, dtype=wp.vec3, device=params.device)
        _evaluate(field, params, shape, vertices, values, gradients, clip_radius)
        normals = gradients.numpy()  # host sync
        length = np.linalg.norm(normals, axis=1, keepdims=True)
        normals = np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)
    faces = indices.numpy().reshape(-1, 3).astype(np.int32)
    return SurfaceMesh(vertices.numpy().reshape(-1, 3).astype(np.float32), faces, normals.astype(np.float32))


def _has_interior_hole(mesh: SurfaceMesh, lower: float, upper: float, spacing: float) -> bool:
    """True when an edge used by one face only lies away from the box walls (a wrongly pruned cell)."""
    if len(mesh.faces) == 0:
        return False
    edges = np.sort(mesh.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2).astype(np.int64), axis=1)
    keys, counts = np.unique(edges[:, 0] * len(mesh.vertices) + edges[:, 1], return_counts=True)
    open_vertices = np.unique(np.stack(np.divmod(keys[counts == 1], len(mesh.vertices))).ravel())
    p = mesh.vertices[open_vertices]
    on_wall = ((p - lower) < 1e-3 * spacing) | ((upper - p) < 1e-3 * spacing)
    return bool(len(p)) and not on_wall.any(axis=1).all()


def extract_neural(
    architecture,
    weights,
    resolution: int = 256,
    method: str = "sparse",
    lipschitz: LipschitzBound | None = None,
    clip_radius: float | None = None,
    device: str | None = None,
) -> SurfaceMesh:
    """Marching-cubes mesh of one neural shape over the cube [-1, 1]^3 of its normalised frame.

    method : "sparse" (default; ``lipschitz`` defaults to :func:`kernels.mlp_eval.lipschitz_bound`) or "dense".
    clip_radius : intersect the SDF with this sphere (normalised units) first, or None.
    Returns a :class:`SurfaceMesh` in the normalised frame, outward faces and normals.
    """
    if method not in ("sparse", "dense"):
        raise ValueError(f"method must be 'sparse' or 'dense', got '{method}'")
    field = neural_field(architecture)
    device = default_device(device)
    params = wp.array(field.pack([weights]), dtype=field.param_dtype, device=device)
    if method == "dense":
        return extract_dense(field, params, 0, resolution, clip_radius=clip_radius)
    bound = lipschitz if lipschitz is not None else lipschitz_bound(architecture, weights, device=device)
    return extract_sparse(field, params, 0, resolution, bound, clip_radius=clip_radius)
