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
   Proposals are made and decided in one Warp launch (:mod:`kernels.importance_sampling`).
3. Only accepted points get a sign (pseudo normal for clean meshes, winding number otherwise).

A fraction of the points (``uniform_fraction``) is drawn uniformly in the cube, as in the paper's
code, so the field is also fitted far from the surface.

Frame: the normalised frame of :mod:`backend.meshes.loading` (bounding sphere radius 0.9); the
sampling cube is [-1, 1]^3. Sign convention: negative inside.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from backend.shapes.frame import CUBE_HALF_SIZE
from kernels.importance_sampling import draw_proposals
from kernels.mesh_sdf import MeshDistance, SignMethod

DEFAULT_BETA = 60.0
DEFAULT_UNIFORM_FRACTION = 1.0 / 16.0
# Half the thickness a sheet (a mesh with no inside) is given when fitted as a shell, normalised units:
# at least half a cell of the default 128^3 extraction grid (0.0079), so marching cubes finds a grid
# point inside the shell wherever the sheet is, and within the F-score's threshold (0.01) of it.
SHELL_HALF_THICKNESS = 0.01
# Share of samples whose sign jumps (sign_jump_share) above which a winding-number sign describes no solid:
# measured on real meshes, closed or with small holes 0 to 0.0042 (the bunny's holes), a box without its
# top 0.010, a hemisphere 0.016, an open car body 0.048, a chair of sheets and wires 0.097.
MAX_SIGN_JUMPS = 0.008


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
    """Cells covering the cube; those that may hold points within a few 1/beta of the surface are split ``depth`` times.

    ``centre_dist`` is a lower bound on the unsigned distance at each centre: exact near the surface,
    the query limit where no face is that close (which keeps far queries cheap). Lower bounds keep the
    sampling bounds valid.
    """
    split_margin = 4.0 / beta  # where the target mass is, and where a loose bound would waste proposals
    base = 8
    half = CUBE_HALF_SIZE / base
    axis = -CUBE_HALF_SIZE + half * (2 * np.arange(base) + 1)
    centres = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    offsets = np.stack(np.meshgrid([-1, 1], [-1, 1], [-1, 1], indexing="ij"), -1).reshape(-1, 3)
    leaves = []
    for level in range(depth + 1):
        half_diagonal = np.sqrt(3.0) * half
        dist = distance.distance(centres, SignMethod.NONE, max_dist=2 * (split_margin + half_diagonal))
        half_sizes = np.full(len(centres), half)
        if level == depth:
            leaves.append((centres, half_sizes, dist))
            break
        near = dist - half_diagonal < split_margin
        leaves.append((centres[~near], half_sizes[~near], dist[~near]))
        half /= 2
        centres = (centres[near][:, None, :] + offsets[None] * half).reshape(-1, 3)
    return _Cells(*(np.concatenate(part) for part in zip(*leaves)))


def _draw_near_surface(
    distance: MeshDistance, cells: _Cells, n: int, beta: float, sign: SignMethod, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Exact draws from density proportional to exp(-beta * unsigned distance) over the cube.

    Returns points (n, 3) and their distances (n,), signed when ``sign`` is PSEUDO_NORMAL (which costs
    no more than the unsigned query), unsigned otherwise.
    """
    weight = np.exp(-beta * np.maximum(0.0, cells.centre_dist - np.sqrt(3.0) * cells.half_sizes)) * cells.half_sizes**3
    cell_cdf = np.cumsum(weight)
    cell_cdf /= cell_cdf[-1]
    points: list[np.ndarray] = []
    dists: list[np.ndarray] = []
    kept = proposed = 0
    batch = 65536  # a pilot batch measures the acceptance rate; later batches are sized from it
    while kept < n:
        x, d = draw_proposals(
            distance,
            cell_cdf,
            cells.centres,
            cells.half_sizes,
            cells.centre_dist,
            beta,
            batch,
            seed=int(rng.integers(2**31)),
            sign=sign,
        )
        points.append(x)
        dists.append(d)
        kept += len(x)
        proposed += batch
        batch = int(min(max((n - kept) * proposed / max(kept, 1) * 1.02, 4096), 64 * n + 4096))
    return np.concatenate(points)[:n], np.concatenate(dists)[:n]


def importance_samples(
    distance: MeshDistance,
    n: int,
    *,
    sign: SignMethod,
    beta: float = DEFAULT_BETA,
    uniform_fraction: float = DEFAULT_UNIFORM_FRACTION,
    seed: int = 0,
    octree_depth: int = 3,
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


def encloses_volume(samples: SdfSamples, depth: float = SHELL_HALF_THICKNESS) -> bool:
    """Whether a mesh holds a solid, judged from its signed samples: some lie inside it deeper than ``depth``.

    A closed body puts about a quarter of the near-surface samples there; a single open sheet or a thin
    open shell none, because the winding number of an open surface stays below 0.5 away from it: such
    a mesh has no inside to sign, and is fitted as a shell instead (:func:`as_shell`), as is one whose
    sign jumps across large openings (:func:`sign_jump_share`). So is a closed body thinner than
    2 ``depth`` everywhere (a plate about one cell of a 128^3 grid thick, which the grid's points miss):
    around a solid that thin the shell is the body thickened by ``depth``, which the grid holds.
    """
    return bool((samples.sdf < -depth).mean() > 1e-3)


def sign_jump_share(samples: SdfSamples, count: int = 30_000, neighbours: int = 8, tolerance: float = 0.005) -> float:
    """Share of (the first ``count``) samples whose signed distance differs from one of their nearest
    ``neighbours``' by more than the distance between the two points plus ``tolerance``.

    A distance field cannot do that (it is 1-Lipschitz), and a winding-number sign on a closed mesh does not.
    On an open mesh it does: where the winding number passes 0.5 across an opening, far from any face, the
    sign flips with nothing there, a membrane a fit would make into a surface the source does not have. The
    share grows with the openings' size (see MAX_SIGN_JUMPS). Samples are shuffled, so the first ``count``
    are a fair subset.
    """
    points, sdf = samples.points[:count], samples.sdf[:count]
    if len(points) <= neighbours:
        return 0.0
    gaps, nearest = cKDTree(points).query(points, k=neighbours + 1)  # the first is the point itself
    jumps = np.abs(sdf[:, None] - sdf[nearest[:, 1:]]) > gaps[:, 1:] + tolerance
    return float(jumps.any(axis=1).mean())


def as_shell(samples: SdfSamples, half_thickness: float = SHELL_HALF_THICKNESS) -> SdfSamples:
    """The samples of a solid shell around the surface: unsigned distance minus ``half_thickness``."""
    return SdfSamples(samples.points, np.abs(samples.sdf) - np.float32(half_thickness))
