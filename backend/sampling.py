"""Training samples for a neural SDF: points drawn with density proportional to exp(-beta * |sdf|).

The paper (Davies et al., Sec. 2.1.2) draws a 10 M-point uniform pool, computes the signed distance of
every point and resamples 1 M of them with probability proportional to w(x) = exp(-beta |sdf(x)|).
Exact signed distance is the expensive part, so we draw from the *same* density by rejection
sampling and compute the sign only for the points we keep:

1. An octree over the sampling cube bounds |sdf| from below in each cell: for a cell with centre c and
   half-diagonal h, the unsigned distance u(x) >= u(c) - |x - c| >= u(c) - h (distance is 1-Lipschitz).
   Cells near the surface are split, so the bound is tight where the mass is.
2. Propose a cell with probability proportional to volume * exp(-beta * max(0, u(c) - h)), a point
   uniformly inside it, then accept in two stages: first with the point's own cheap bound
   exp(-beta * max(0, u(c) - |x - c|)) / cell bound (no mesh query), then, after one unsigned-distance
   query, with exp(-beta * u(x)) / point bound. Accepted points are exact draws from the target.
3. Only accepted points get a sign (pseudo normal for clean meshes, winding number otherwise).

A fraction of the points (``uniform_fraction``) is drawn uniformly in the cube, as in the paper's
code, so the field is also fitted far from the surface.

Frame: the normalised frame of :mod:`backend.mesh_loading` (bounding sphere radius 0.9); the
sampling cube is [-1, 1]^3. Sign convention: negative inside.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels.mesh_sdf import MeshDistance, SignMethod

CUBE_HALF_SIZE = 1.0
DEFAULT_BETA = 60.0
DEFAULT_UNIFORM_FRACTION = 1.0 / 16.0


@dataclass(frozen=True)
class SdfSamples:
    """Points with their signed distances. points : (n, 3) float32; sdf : (n,) float32, negative inside."""

    points: np.ndarray
    sdf: np.ndarray


@dataclass(frozen=True)
class _Cells:
    """Leaf cells of the bounding octree: centres (m, 3), half sizes (m,), centre distances (m,)."""

    centres: np.ndarray
    half_sizes: np.ndarray
    centre_dist: np.ndarray


def _octree_cells(distance: MeshDistance, beta: float, depth: int) -> _Cells:
    """Cells covering the cube; those whose bound is not negligible are split ``depth`` times."""
    base = 8
    half = CUBE_HALF_SIZE / base
    axis = -CUBE_HALF_SIZE + half * (2 * np.arange(base) + 1)
    centres = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    half_sizes = np.full(len(centres), half)
    dist = distance.distance(centres, SignMethod.NONE)
    offsets = np.stack(np.meshgrid([-1, 1], [-1, 1], [-1, 1], indexing="ij"), -1).reshape(-1, 3)
    leaves = []
    for _ in range(depth):
        # Split a cell when it may contain points within a few 1/beta of the surface: that is where
        # the target mass is, and where a loose bound would waste proposals.
        near = dist - np.sqrt(3.0) * half_sizes < 4.0 / beta
        leaves.append((centres[~near], half_sizes[~near], dist[~near]))
        centres, half_sizes = centres[near], half_sizes[near] / 2
        centres = (centres[:, None, :] + offsets[None] * half_sizes[:, None, None]).reshape(-1, 3)
        half_sizes = np.repeat(half_sizes, 8)
        dist = distance.distance(centres, SignMethod.NONE)
    leaves.append((centres, half_sizes, dist))
    return _Cells(*(np.concatenate(part) for part in zip(*leaves)))


def _draw_near_surface(
    distance: MeshDistance, cells: _Cells, n: int, beta: float, sign: SignMethod, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Exact draws from density proportional to exp(-beta * unsigned distance) over the cube.

    Returns points (n, 3) and their distances (n,), signed when ``sign`` is PSEUDO_NORMAL (which costs
    no more than the unsigned query), unsigned otherwise.
    """
    cell_bound = np.exp(-beta * np.maximum(0.0, cells.centre_dist - np.sqrt(3.0) * cells.half_sizes))
    cell_cdf = np.cumsum(cell_bound * cells.half_sizes**3)
    cell_cdf /= cell_cdf[-1]
    query_sign = SignMethod.PSEUDO_NORMAL if sign == SignMethod.PSEUDO_NORMAL else SignMethod.NONE
    points: list[np.ndarray] = []
    dists: list[np.ndarray] = []
    kept = proposed = 0
    batch = 65536  # a pilot batch measures the acceptance rate; later batches are sized from it
    while kept < n:
        idx = np.minimum(np.searchsorted(cell_cdf, rng.uniform(size=batch)), len(cell_cdf) - 1)
        centre, half = cells.centres[idx], cells.half_sizes[idx]
        offset = rng.uniform(-1.0, 1.0, size=(batch, 3)) * half[:, None]
        point_bound = np.exp(-beta * np.maximum(0.0, cells.centre_dist[idx] - np.sqrt(np.einsum("ij,ij->i", offset, offset))))
        stage1 = rng.uniform(size=batch) * cell_bound[idx] < point_bound
        x, point_bound = centre[stage1] + offset[stage1], point_bound[stage1]
        d = distance.distance(x, query_sign)
        stage2 = rng.uniform(size=len(x)) * point_bound < np.exp(-beta * np.abs(d))
        points.append(x[stage2])
        dists.append(d[stage2])
        kept += int(stage2.sum())
        proposed += batch
        batch = int(min(max((n - kept) * proposed / max(kept, 1) * 1.02, 4096), 64 * n + 4096))
    return np.concatenate(points)[:n].astype(np.float32), np.concatenate(dists)[:n]


def importance_samples(
    distance: MeshDistance,
    n: int,
    *,
    sign: SignMethod,
    beta: float = DEFAULT_BETA,
    uniform_fraction: float = DEFAULT_UNIFORM_FRACTION,
    seed: int = 0,
    octree_depth: int = 4,
) -> SdfSamples:
    """Draw ``n`` points, (1 - uniform_fraction) of them with density proportional to exp(-beta |sdf|).

    distance : the mesh in its normalised frame. sign : how inside/outside is decided for kept points.
    Returns :class:`SdfSamples` in the normalised frame, shuffled.
    """
    if n <= 0:
        raise ValueError(f"number of samples must be positive, got {n}")
    if beta < 0 or not 0.0 <= uniform_fraction <= 1.0:
        raise ValueError(f"need beta >= 0 and 0 <= uniform_fraction <= 1, got {beta} and {uniform_fraction}")
    rng = np.random.default_rng(seed)
    n_uniform = int(round(n * uniform_fraction))
    uniform = rng.uniform(-CUBE_HALF_SIZE, CUBE_HALF_SIZE, size=(n_uniform, 3)).astype(np.float32)
    points, sdf = [uniform], [distance.distance(uniform, sign)]
    if n - n_uniform > 0:
        cells = _octree_cells(distance, beta, octree_depth)
        near, near_dist = _draw_near_surface(distance, cells, n - n_uniform, beta, sign, rng)
        points.append(near)
        sdf.append(near_dist if sign in (SignMethod.NONE, SignMethod.PSEUDO_NORMAL) else distance.distance(near, sign))
    order = rng.permutation(n)
    return SdfSamples(points=np.concatenate(points)[order], sdf=np.concatenate(sdf)[order])
