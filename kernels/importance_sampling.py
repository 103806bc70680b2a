# Rejection sampling of points with density proportional to exp(-beta * |sdf|), in one Warp launch.
#
# The host (backend.meshes.sampling) builds an octree of cells with a lower bound on the unsigned distance in
# each; every thread here draws one proposal and decides it in two stages:
#   1. a cell by its bound (binary search in the cell CDF), a point uniformly inside it, accepted with
#      the point's own cheap bound exp(-beta * max(0, u(c) - |x - c|)) over the cell's bound;
#   2. one BVH closest-point query, accepted with exp(-beta * u(x)) over the point's bound (the query is
#      limited to the largest distance that would be accepted, which makes rejections cheap).
# Accepted proposals are exact draws from the target density. Sign convention: negative inside.

from __future__ import annotations

import numpy as np
import warp as wp

from kernels.device import run_chunked
from kernels.mesh_sdf import MeshDistance, SignMethod


@wp.kernel(enable_backward=False)
def _propose_kernel(
    mesh_id: wp.uint64,
    cell_cdf: wp.array(dtype=float),
    cell_centres: wp.array(dtype=wp.vec3),
    cell_half_sizes: wp.array(dtype=float),
    cell_dist: wp.array(dtype=float),
    cell_bound: wp.array(dtype=float),
    beta: float,
    seed: int,
    offset: int,
    with_sign: bool,
    out_points: wp.array(dtype=wp.vec3),
    out_dist: wp.array(dtype=float),
    out_accepted: wp.array(dtype=wp.int32),
):
    tid = wp.tid()
    state = wp.rand_init(seed, offset + tid)
    cell = wp.min(wp.lower_bound(cell_cdf, wp.randf(state)), cell_cdf.shape[0] - 1)
    half = cell_half_sizes[cell]
    step = wp.vec3(wp.randf(state, -half, half), wp.randf(state, -half, half), wp.randf(state, -half, half))
    point_bound = wp.exp(-beta * wp.max(0.0, cell_dist[cell] - wp.length(step)))
    out_accepted[tid] = 0
    if wp.randf(state) * cell_bound[cell] >= point_bound:
        return
    p = cell_centres[cell] + step
    # Stage 2 accepts when r * point_bound < exp(-beta * d), i.e. d < -log(r * point_bound) / beta: a
    # closest-point query limited to that distance decides it, and a short limit prunes the BVH walk.
    limit = -wp.log(wp.max(wp.randf(state) * point_bound, 1.0e-30)) / beta
    if with_sign:
        q = wp.mesh_query_point_sign_normal(mesh_id, p, limit)
        if q.result:
            out_points[tid] = p
            out_dist[tid] = wp.length(p - wp.mesh_eval_position(mesh_id, q.face, q.u, q.v)) * wp.sign(q.sign)
            out_accepted[tid] = 1
    else:
        q = wp.mesh_query_point_no_sign(mesh_id, p, limit)
        if q.result:
            out_points[tid] = p
            out_dist[tid] = wp.length(p - wp.mesh_eval_position(mesh_id, q.face, q.u, q.v))
            out_accepted[tid] = 1


def draw_proposals(
    distance: MeshDistance,
    cell_cdf: np.ndarray,
    centres: np.ndarray,
    half_sizes: np.ndarray,
    centre_dist: np.ndarray,
    beta: float,
    count: int,
    seed: int,
    sign: SignMethod,
) -> tuple[np.ndarray, np.ndarray]:
    """Make ``count`` proposals from the cells and return the accepted ones.

    cell_cdf (m,) increasing to 1; centres (m, 3); half_sizes (m,); centre_dist (m,) unsigned distance
    at each centre, normalised frame. Returns points (k, 3) float32 and their distances (k,), signed
    (pseudo normal) when ``sign`` is PSEUDO_NORMAL, unsigned otherwise.
    """
    device = distance.device
    bound = np.exp(-beta * np.maximum(0.0, centre_dist - np.sqrt(3.0) * half_sizes))
    arrays = [
        wp.array(np.asarray(a, dtype=np.float32), dtype=dtype, device=device)
        for a, dtype in (
            (cell_cdf, float),
            (centres, wp.vec3),
            (half_sizes, float),
            (centre_dist, float),
            (bound, float),
        )
    ]
    points = wp.empty(count, dtype=wp.vec3, device=device)
    dist = wp.empty(count, dtype=float, device=device)
    accepted = wp.empty(count, dtype=wp.int32, device=device)
    with_sign = sign == SignMethod.PSEUDO_NORMAL

    def run(start: int, stop: int) -> None:
        wp.launch(
            _propose_kernel,
            dim=stop - start,
            inputs=[distance.mesh.id, *arrays, float(beta), int(seed), start, with_sign],
            outputs=[points[start:stop], dist[start:stop], accepted[start:stop]],
            device=device,
        )

    run_chunked(device, count, run)
    keep = accepted.numpy().astype(bool)  # host sync
    return points.numpy()[keep], dist.numpy()[keep]
