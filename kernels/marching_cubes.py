# Marching cubes on a neural (or any Warp) SDF field: dense grid or sparse narrow band.
#
# Dense: the field is sampled on every node of an r^3 grid over a box (the cube [-1, 1]^3 for neural
# shapes) and ``warp.geometry.IsoSurfaceMarchingCubes`` extracts the zero level set: cost follows the
# volume. Sparse: a coarse-to-fine narrow band over the same grid (:mod:`kernels.narrow_band`)
# evaluates only nodes near the surface, pruning with Lipschitz bounds estimated locally; cost follows
# the area. Sparse evaluates the field at the same float32 points as dense and places vertices with
# the same arithmetic, so when its bounds hold it returns the same triangles (same vertices, same
# winding; only the order differs). When a check of the band fails (a hole, or a sign an evaluation
# contradicts), the bounds are doubled and the band redone (``RETRIES`` times), then dense is used.
#
# Both return welded vertices (one per crossed grid edge), faces wound counter-clockwise seen from
# outside (normals point from negative to positive values) and unit normals from the analytic gradient.
# Sign convention: negative inside.

import math
from dataclasses import dataclass

import numpy as np
import warp as wp
import warp.geometry

from kernels.device import default_device
from kernels.mlp_eval import MlpLayout, Weights, launch_field, neural_field
from kernels.narrow_band import Sampler, band_surface, evaluate_coarse, find_band

MAX_RESOLUTION = 1024
RETRIES = 2  # times the Lipschitz bounds are doubled after a failed check, before falling back to dense
LOCAL_MARGIN = 1.5  # local bound = margin x the largest gradient norm sampled at a coarse cell's corners
MIN_SPARSE_RESOLUTION = 9  # below this the sparse path samples the dense grid


@dataclass
class SurfaceMesh:
    """vertices (v, 3) float32 and normals (v, 3) float32 in the field's frame; faces (f, 3) int32."""

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    evaluations: int = 0  # field evaluations of the extraction (value or value + gradient), normals excluded
    bound_scale: float = 1.0  # sparse: the factor the Lipschitz bounds ended at (1, 2, 4; inf: fell back to dense)


@wp.kernel(enable_backward=False)
def _grid_points_kernel(
    lower: wp.vec3, spacing: float, resolution: int, offset: int, out_points: wp.array(dtype=wp.vec3)
):
    # Node ``offset + tid`` of the grid, written to ``out_points[tid]``.
    i = offset + wp.tid()
    x = i / (resolution * resolution)
    y = (i / resolution) % resolution
    z = i % resolution
    out_points[wp.tid()] = lower + spacing * wp.vec3(float(x), float(y), float(z))


def _check(resolution: int, lower: float, upper: float) -> None:
    if not 2 <= resolution <= MAX_RESOLUTION:
        raise ValueError(f"resolution must be between 2 and {MAX_RESOLUTION}, got {resolution}")
    if not upper > lower:
        raise ValueError(f"the box must have upper > lower, got [{lower}, {upper}]")


def sample_grid(
    field,
    params: wp.array,
    shape: int,
    resolution: int,
    lower: float = -1.0,
    upper: float = 1.0,
    clip_radius: float | None = None,
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
        wp.launch(
            _grid_points_kernel,
            dim=count,
            inputs=[wp.vec3(lower, lower, lower), spacing, resolution, start],
            outputs=[points],
            device=device,
        )
        launch_field(
            field, params, points[:count], flat[start : start + count], first_shape=shape, clip_radius=clip_radius
        )
    return values


def extract_dense(
    field,
    params: wp.array,
    shape: int = 0,
    resolution: int = 256,
    lower: float = -1.0,
    upper: float = 1.0,
    clip_radius: float | None = None,
) -> SurfaceMesh:
    """Zero level set of shape ``shape`` of a field from every node of the r^3 grid over [lower, upper]^3.

    ``clip_radius``: intersect the field with that sphere around the origin (drops stray far surfaces).
    """
    values = sample_grid(field, params, shape, resolution, lower, upper, clip_radius)
    vertices, indices = warp.geometry.IsoSurfaceMarchingCubes.extract(
        values, 0.0, lower=(lower,) * 3, upper=(upper,) * 3
    )
    mesh = _with_normals(field, params, shape, vertices, indices, clip_radius)
    mesh.evaluations = resolution**3
    return mesh


def extract_sparse(
    field,
    params: wp.array,
    shape: int = 0,
    resolution: int = 256,
    lipschitz: float | None = None,
    lower: float = -1.0,
    upper: float = 1.0,
    clip_radius: float | None = None,
    margin: float = LOCAL_MARGIN,
) -> SurfaceMesh:
    """The same surface as :func:`extract_dense` from a narrow band, at a cost that follows the area.

    lipschitz : a bound of the field's gradient norm over the whole box (1.0 for an exact SDF), or None
        to use local bounds: ``margin`` x the largest gradient norm at the corners of each coarse cell
        (32 per axis), at least 1. See :mod:`kernels.narrow_band` and docs/kernels.md.
    If a check finds a hole or a contradicted sign, or nothing is found, the bounds are doubled and the
    band redone (up to ``RETRIES`` times); a band that still fails its checks falls back to dense.
    """
    _check(resolution, lower, upper)
    if lipschitz is not None and not lipschitz > 0:
        raise ValueError(f"the Lipschitz bound must be positive, got {lipschitz}")
    if not margin > 0:
        raise ValueError(f"the margin must be positive, got {margin}")
    if resolution < MIN_SPARSE_RESOLUTION:
        return extract_dense(field, params, shape, resolution, lower, upper, clip_radius)
    sampler = Sampler(field, params, shape, lower, (upper - lower) / (resolution - 1), clip_radius)
    coarse = evaluate_coarse(sampler, resolution, gradients=lipschitz is None)
    failed = False
    for attempt in range(RETRIES + 1):
        band = find_band(sampler, coarse, resolution, lipschitz, margin, 2.0**attempt)
        if band is None:  # everything pruned: no surface, unless the bounds were too small
            continue
        surface = band_surface(band, resolution, lower, upper) if band.sign_flips == 0 else None
        failed = surface is None
        if not failed and surface[1].shape[0]:
            mesh = _with_normals(field, params, shape, *surface, clip_radius)
            mesh.evaluations, mesh.bound_scale = sampler.evaluations, 2.0**attempt
            return mesh
    if failed:
        mesh = extract_dense(field, params, shape, resolution, lower, upper, clip_radius)
        mesh.evaluations, mesh.bound_scale = mesh.evaluations + sampler.evaluations, math.inf
        return mesh
    empty = wp.empty(0, dtype=wp.vec3, device=params.device)
    mesh = _with_normals(field, params, shape, empty, wp.empty(0, dtype=wp.int32, device=params.device), clip_radius)
    mesh.evaluations, mesh.bound_scale = sampler.evaluations, 2.0**RETRIES
    return mesh


def _with_normals(
    field, params: wp.array, shape: int, vertices: wp.array, indices: wp.array, clip_radius: float | None
) -> SurfaceMesh:
    """Host mesh with unit normals from the field's analytic gradient at the vertices."""
    n = vertices.shape[0]
    normals = np.zeros((n, 3), dtype=np.float32)
    if n:
        values = wp.empty(n, dtype=float, device=params.device)
        gradients = wp.empty(n, dtype=wp.vec3, device=params.device)
        launch_field(field, params, vertices, values, gradients, first_shape=shape, clip_radius=clip_radius)
        normals = gradients.numpy()  # host sync
        length = np.linalg.norm(normals, axis=1, keepdims=True)
        normals = np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)
    faces = indices.numpy().reshape(-1, 3).astype(np.int32)  # host sync
    return SurfaceMesh(
        vertices.numpy().reshape(-1, 3).astype(np.float32), faces, normals.astype(np.float32)
    )  # host sync


def extract_neural(
    architecture: MlpLayout,
    weights: Weights,
    resolution: int = 256,
    method: str = "sparse",
    lipschitz: float | None = None,
    clip_radius: float | None = None,
    device: str | None = None,
) -> SurfaceMesh:
    """Marching-cubes mesh of one neural shape over the cube [-1, 1]^3 of its normalised frame.

    architecture, weights : the shape's network (see :class:`kernels.mlp_eval.MlpLayout`).
    method : "sparse" (default; local Lipschitz bounds unless ``lipschitz`` gives a global one) or "dense".
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
    return extract_sparse(field, params, 0, resolution, lipschitz, clip_radius=clip_radius)
