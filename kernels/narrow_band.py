"""The narrow band of sparse marching cubes: the grid cells a field's zero level set crosses, found
coarse to fine with Lipschitz bounds, and their welded triangles.

:func:`kernels.marching_cubes.extract_sparse` drives it; see docs/kernels.md. The grid is the r^3 nodes
``lower + spacing * (i, j, k)`` of the dense extraction (normalised frame for neural shapes); fields
follow ``kernels.mlp_eval.NeuralField``'s interface, sign convention negative inside.

1. :func:`evaluate_coarse`: the coarsest level, ``COARSE_CELLS`` cells per axis: value and gradient at
   every node; a coarse cell's bound is L = max(1, margin * the largest gradient norm at its corners);
2. :func:`find_band`, levels of stride 2^k grid cells down to stride 2: the child of a kept cell at its
   corner k is kept unless |f(corner k)| > L * child diagonal (that corner's Lipschitz ball covers the
   child); L is raised to margin * the steepest secant slope seen on the cell's edges, for the finer
   levels too; the corners of kept children are evaluated (those of the parent level are copied);
3. the grid nodes inside kept stride-2 cells: a node at distance d from a stride-2 corner with
   |f| > L * d takes that corner's sign unevaluated; the others are evaluated. The grid cells with a
   sign change are kept, then the ends of every crossing edge evaluated (vertices interpolate evaluated
   values only);
4. two checks: no inferred sign may be contradicted by its evaluation (``Band.sign_flips``), and
   (:func:`band_surface`) no crossing cell may have a face with a sign change towards a grid cell
   outside the kept ones (the surface would leave the band). The caller retries with larger bounds.

The field is evaluated at the same float32 points as the dense grid, and vertices are placed with the
same arithmetic as ``warp.geometry.IsoSurfaceMarchingCubes``, so when the bounds hold the triangles are
the dense ones (same vertices, same winding, another order). Values live in sparse node stores: bricks
of ``BRICK``^3 nodes allocated where a level's cells need them.
"""

# Warp kernels declare a variable that a branch or dynamic loop reassigns with its type: ``int(0)``.
# ruff: noqa: UP018, RUF046

import functools
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import warp as wp
import warp.geometry
import warp.utils

from kernels.device import cpu_workers, run_chunked
from kernels.mlp_eval import launch_field

COARSE_CELLS = 32  # cells per axis of the coarsest level (at least; a power of two)
BRICK = 8  # node stores allocate bricks of BRICK^3 nodes

_MC = warp.geometry.IsoSurfaceMarchingCubes
_CORNERS = _MC.CUBE_CORNER_OFFSETS  # corner i is bit i of a cell's case (set where value >= 0)
if _CORNERS != tuple((int((k & 3) in (1, 2)), (k & 3) >> 1, k >> 2) for k in range(8)):  # what ``_corner`` computes
    raise ImportError("warp.geometry.IsoSurfaceMarchingCubes.CUBE_CORNER_OFFSETS changed order: update _corner")


def _edge_geometry() -> tuple[tuple[int, int, int], ...]:
    """Per cube edge: (lower corner, upper corner, axis), from Warp's public tables."""
    edges = []
    for a, b in _MC.EDGE_TO_CORNERS:
        axis = next(i for i in range(3) if _CORNERS[a][i] != _CORNERS[b][i])
        edges.append((a, b, axis) if _CORNERS[a][axis] < _CORNERS[b][axis] else (b, a, axis))
    return tuple(edges)


_EDGES = _edge_geometry()
_vec8 = wp.types.vector(length=8, dtype=wp.float32)  # per cell corner
_vec8i = wp.types.vector(length=8, dtype=wp.int32)
_vec27 = wp.types.vector(length=27, dtype=wp.float32)  # per grid node of a stride-2 cell
_vec27i = wp.types.vector(length=27, dtype=wp.int32)


@wp.struct
class _Tables:
    # Per cube edge its lower corner, upper corner and axis (as ``_EDGES``); Warp's case -> triangle tables.
    edge_lower: wp.array(dtype=wp.int32)
    edge_upper: wp.array(dtype=wp.int32)
    edge_axis: wp.array(dtype=wp.int32)
    case_range: wp.array(dtype=wp.int32)
    triangles: wp.array(dtype=wp.int32)


@functools.cache
def _tables(device: str) -> _Tables:
    """The cube's edge and triangle tables on ``device``, cached per device."""
    tables = _Tables()
    tables.edge_lower, tables.edge_upper, tables.edge_axis = (
        wp.array([edge[i] for edge in _EDGES], dtype=wp.int32, device=device) for i in range(3)
    )
    tables.case_range = wp.array(_MC.CASE_TO_TRI_RANGE, dtype=wp.int32, device=device)
    tables.triangles = wp.array(_MC.TRI_LOCAL_INDICES, dtype=wp.int32, device=device)
    return tables


# --- node stores ---------------------------------------------------------------------------------


class NodeState(IntEnum):
    """State of a node in a store.

    Kernels use them as ``wp.static(NodeState.X)`` literals: a ``wp.constant`` passed to an atomic inside
    a branch of an unrolled loop was merged like a variable (Warp 1.19) and took wrong values.
    """

    UNSEEN = 0
    INFERRED = 1  # sign (and a lower bound of |f|) from the Lipschitz ball of a coarser node
    NEEDED = 2  # queued for evaluation
    KNOWN = 3  # evaluated (or copied from the coarser level)


@wp.struct
class _Nodes:
    # A node store as kernels see it (``_Store``): its brick table, bricks per axis, and per node a value and state.
    table: wp.array(dtype=wp.int32)
    bricks: int
    values: wp.array(dtype=float)
    state: wp.array(dtype=wp.int32)


@wp.struct
class _Chunk:
    # One launch's share of the cells (from ``offset``) and where it queues store nodes: its region of
    # ``queued`` from ``base``, counted by ``counters[index]``.
    cells: wp.array(dtype=wp.vec3i)
    offset: int
    index: int
    base: int
    counters: wp.array(dtype=wp.int32)
    queued: wp.array(dtype=wp.int32)


@wp.func
def _slot(store: _Nodes, n: wp.vec3i) -> int:
    # Pool index of node n in a store; -1 when n lies outside it or its brick is not allocated.
    size = wp.static(BRICK)
    bricks = store.bricks
    top = bricks * size
    slot = int(-1)
    if n[0] >= 0 and n[1] >= 0 and n[2] >= 0 and n[0] < top and n[1] < top and n[2] < top:
        brick = store.table[((n[0] / size) * bricks + n[1] / size) * bricks + n[2] / size]
        if brick >= 0:
            slot = ((brick * size + n[0] % size) * size + n[1] % size) * size + n[2] % size
    return slot


@wp.func
def _corner(k: int) -> wp.vec3i:
    # Offset of cube corner k in Warp's marching-cubes order: (0,0,0) (1,0,0) (1,1,0) (0,1,0), then z = 1.
    low = k & 3
    return wp.vec3i(wp.where(low == 1 or low == 2, 1, 0), low >> 1, k >> 2)


@wp.func
def _coarse_index(cells_per_axis: int, shift: int, c: wp.vec3i) -> int:
    # Index of the coarse cell holding cell c of a level ``shift`` halvings finer.
    m = cells_per_axis
    return ((c[0] >> shift) * m + (c[1] >> shift)) * m + (c[2] >> shift)


@wp.func
def _corner_values(store: _Nodes, c: wp.vec3i) -> _vec8:
    v = _vec8()
    for k in range(8):
        v[k] = store.values[_slot(store, c + _corner(k))]
    return v


@wp.func
def _case(v: _vec8) -> int:
    # Marching-cubes case: bit k set where corner k is outside (value >= 0).
    code = int(0)
    for k in range(8):
        if v[k] >= 0.0:
            code = code | (1 << k)
    return code


@wp.func
def _crosses(a: float, b: float) -> bool:
    return (a >= 0.0) != (b >= 0.0)


@wp.kernel(enable_backward=False)
def _mark_bricks_kernel(
    cells: wp.array(dtype=wp.vec3i), scale: int, span: int, bricks: int, out_flags: wp.array(dtype=wp.int32)
):
    # Flags the bricks holding nodes scale * c ... scale * c + span of each cell c.
    size = wp.static(BRICK)
    lo = cells[wp.tid()] * scale
    top = bricks - 1
    for bx in range(lo[0] / size, wp.min((lo[0] + span) / size, top) + 1):
        for by in range(lo[1] / size, wp.min((lo[1] + span) / size, top) + 1):
            for bz in range(lo[2] / size, wp.min((lo[2] + span) / size, top) + 1):
                out_flags[(bx * bricks + by) * bricks + bz] = 1


@wp.kernel(enable_backward=False)
def _assign_bricks_kernel(
    flags: wp.array(dtype=wp.int32),
    scan: wp.array(dtype=wp.int32),
    bricks: int,
    out_table: wp.array(dtype=wp.int32),
    out_origins: wp.array(dtype=wp.vec3i),
):
    # Flagged brick b gets pool slot scan[b] - 1; its first node is remembered for decoding positions.
    b = wp.tid()
    if flags[b] != 0:
        slot = scan[b] - 1
        out_table[b] = slot
        out_origins[slot] = wp.vec3i(b / (bricks * bricks), (b / bricks) % bricks, b % bricks) * wp.static(BRICK)


@wp.kernel(enable_backward=False)
def _coarse_cells_kernel(cells_per_axis: int, out_cells: wp.array(dtype=wp.vec3i)):
    t = wp.tid()
    m = cells_per_axis
    out_cells[t] = wp.vec3i(t / (m * m), (t / m) % m, t % m)


@wp.func
def _push(chunk: _Chunk, i: int):
    # Append node i to the queue of this launch's chunk.
    chunk.queued[chunk.base + wp.atomic_add(chunk.counters, chunk.index, 1)] = i


@wp.func
def _claim(store: _Nodes, i: int, state: int) -> bool:
    # Move unseen node i to ``state``; whether this thread did (another may have seen it first).
    return wp.atomic_cas(store.state, i, wp.static(NodeState.UNSEEN), state) == wp.static(NodeState.UNSEEN)


@wp.kernel(enable_backward=False)
def _claim_corners_kernel(chunk: _Chunk, store: _Nodes, parent: _Nodes, use_parent: bool):
    # Each unseen corner of a cell is copied from the parent level (all coordinates even) or queued for evaluation.
    c = chunk.cells[chunk.offset + wp.tid()]
    for k in range(8):
        n = c + _corner(k)
        i = _slot(store, n)
        if _claim(store, i, wp.static(NodeState.NEEDED)):
            j = int(-1)
            if use_parent and (n[0] & 1) == 0 and (n[1] & 1) == 0 and (n[2] & 1) == 0:
                j = _slot(parent, wp.vec3i(n[0] >> 1, n[1] >> 1, n[2] >> 1))
            if j >= 0:
                store.values[i] = parent.values[j]
                store.state[i] = wp.static(NodeState.KNOWN)
            else:
                _push(chunk, i)


@wp.kernel(enable_backward=False)
def _node_points_kernel(
    nodes: wp.array(dtype=wp.int32),
    origins: wp.array(dtype=wp.vec3i),
    stride: int,
    lower: wp.vec3,
    spacing: float,
    out_points: wp.array(dtype=wp.vec3),
):
    # Position of a store node: the same expression as the dense grid's, so the same float32 point.
    size = wp.static(BRICK)
    i = nodes[wp.tid()]
    b = origins[i / (size * size * size)]
    x = (b[0] + (i / (size * size)) % size) * stride
    y = (b[1] + (i / size) % size) * stride
    z = (b[2] + i % size) * stride
    out_points[wp.tid()] = lower + spacing * wp.vec3(float(x), float(y), float(z))


@wp.kernel(enable_backward=False)
def _store_values_kernel(
    nodes: wp.array(dtype=wp.int32),
    evaluated: wp.array(dtype=float),
    check: bool,
    values: wp.array(dtype=float),
    state: wp.array(dtype=wp.int32),
    out_flips: wp.array(dtype=wp.int32),
):
    # Evaluated values into a store; with ``check``, counts values whose sign contradicts the inferred one.
    t = wp.tid()
    i = nodes[t]
    f = evaluated[t]
    if check and _crosses(values[i], f):
        wp.atomic_add(out_flips, 0, 1)
    values[i] = f
    state[i] = wp.static(NodeState.KNOWN)


@wp.kernel(enable_backward=False)
def _store_coarse_kernel(
    nodes: wp.array(dtype=wp.int32),
    points: wp.array(dtype=wp.vec3),
    evaluated: wp.array(dtype=float),
    gradients: wp.array(dtype=wp.vec3),
    clip: bool,
    radius: float,
    values: wp.array(dtype=float),
    state: wp.array(dtype=wp.int32),
    norms: wp.array(dtype=float),
):
    # Values (clipped to the sphere when ``clip``) and the gradient norms of the unclipped field.
    t = wp.tid()
    i = nodes[t]
    f = evaluated[t]
    if clip:
        f = wp.max(f, wp.length(points[t]) - radius)
    values[i] = f
    state[i] = wp.static(NodeState.KNOWN)
    norms[i] = wp.length(gradients[t])


@wp.kernel(enable_backward=False)
def _local_bound_kernel(
    cells: wp.array(dtype=wp.vec3i),
    store: _Nodes,
    norms: wp.array(dtype=float),
    margin: float,
    fixed: float,
    scale: float,
    out_bounds: wp.array(dtype=float),
):
    # Per coarse cell: scale * max(1, margin * largest gradient norm at its corners), or scale * fixed when fixed > 0.
    t = wp.tid()
    if fixed > 0.0:
        out_bounds[t] = scale * fixed
    else:
        g = float(0.0)
        for k in range(8):
            g = wp.max(g, norms[_slot(store, cells[t] + _corner(k))])
        out_bounds[t] = scale * wp.max(1.0, margin * g)


@wp.func
def _steepest(v: _vec8) -> float:
    # Largest value difference along the 12 edges of a cell (corners in ``_corner`` order).
    x = wp.max(wp.max(wp.abs(v[1] - v[0]), wp.abs(v[2] - v[3])), wp.max(wp.abs(v[5] - v[4]), wp.abs(v[6] - v[7])))
    y = wp.max(wp.max(wp.abs(v[3] - v[0]), wp.abs(v[2] - v[1])), wp.max(wp.abs(v[7] - v[4]), wp.abs(v[6] - v[5])))
    z = wp.max(wp.max(wp.abs(v[4] - v[0]), wp.abs(v[5] - v[1])), wp.max(wp.abs(v[6] - v[2]), wp.abs(v[7] - v[3])))
    return wp.max(x, wp.max(y, z))


@wp.struct
class _Bounds:
    # Lipschitz bounds of the coarse cells (``per_axis``^3) for cells of a level ``shift`` halvings finer,
    # raised to ``refine`` x the steepest secant slope a cell shows.
    coarse: wp.array(dtype=float)
    per_axis: int
    shift: int
    refine: float


@wp.func
def _cell_bound(bounds: _Bounds, c: wp.vec3i, v: _vec8, edge: float) -> float:
    # The bound of cell c (corner values v, edge length ``edge``): its coarse cell's, raised by its own slopes.
    return wp.max(bounds.coarse[_coarse_index(bounds.per_axis, bounds.shift, c)], bounds.refine * _steepest(v) / edge)


@wp.kernel(enable_backward=False)
def _children_kernel(
    cells: wp.array(dtype=wp.vec3i),
    store: _Nodes,
    bounds: _Bounds,
    edge: float,
    limit: int,
    out_flags: wp.array(dtype=wp.int32),
    out_bounds: wp.array(dtype=float),
):
    # Child k of a cell (the half-size cell at corner k) is kept unless corner k's Lipschitz ball covers
    # it: |f(corner k)| > L * child diagonal. Children past ``limit`` lie outside the grid. The cell's
    # bound (raised by its own secant slopes) is passed on to the coarse cell for the finer levels.
    t = wp.tid()
    c = cells[t]
    v = _corner_values(store, c)
    bound = _cell_bound(bounds, c, v, edge)
    wp.atomic_max(out_bounds, _coarse_index(bounds.per_axis, bounds.shift, c), bound)
    reach = bound * edge * 0.5 * wp.sqrt(3.0)
    for k in range(8):
        child = c * 2 + _corner(k)
        keep = int(0)
        if child[0] <= limit and child[1] <= limit and child[2] <= limit and wp.abs(v[k]) <= reach:
            keep = 1
        out_flags[8 * t + k] = keep


@wp.kernel(enable_backward=False)
def _compact_children_kernel(
    cells: wp.array(dtype=wp.vec3i),
    flags: wp.array(dtype=wp.int32),
    scan: wp.array(dtype=wp.int32),
    out_children: wp.array(dtype=wp.vec3i),
):
    # Flagged children (8 per cell, in ``_corner`` order: its half-size cells, or a stride-2 cell's grid cells) into a list.
    t = wp.tid()
    if flags[t] != 0:
        out_children[scan[t] - 1] = cells[t / 8] * 2 + _corner(t % 8)


@wp.kernel(enable_backward=False)
def _mark_cells_kernel(cells: wp.array(dtype=wp.vec3i), store: _Nodes, out_flags: wp.array(dtype=wp.int32)):
    out_flags[_slot(store, cells[wp.tid()])] = 1


@wp.func
def _queue(store: _Nodes, i: int, chunk: _Chunk):
    # Queue an inferred node for evaluation (once); the plain read first spares most nodes the atomic.
    if store.state[i] == wp.static(NodeState.INFERRED):  # noqa: SIM102
        if wp.atomic_cas(store.state, i, wp.static(NodeState.INFERRED), wp.static(NodeState.NEEDED)) == wp.static(
            NodeState.INFERRED
        ):
            _push(chunk, i)


@wp.kernel(enable_backward=False)
def _resolve_grid_nodes_kernel(
    chunk: _Chunk,
    band: _Nodes,
    bounds: _Bounds,
    spacing: float,
    limit: int,
    grid: _Nodes,
):
    # The 27 grid nodes of a kept stride-2 cell: its corners are copied; a node at distance d = sqrt(odd
    # coordinates) * spacing from its nearest corners takes the sign of one with |f| > L * d (value
    # sign * (|f| - L d), a lower bound); the others are queued for evaluation.
    c = chunk.cells[chunk.offset + wp.tid()]
    corners = _corner_values(band, c)
    bound = _cell_bound(bounds, c, corners, 2.0 * spacing) * spacing
    for ox in range(3):
        for oy in range(3):
            for oz in range(3):
                # only nodes of grid cells inside the grid (cells up to ``limit``)
                if (
                    c[0] * 2 + wp.max(ox - 1, 0) <= limit
                    and c[1] * 2 + wp.max(oy - 1, 0) <= limit
                    and c[2] * 2 + wp.max(oz - 1, 0) <= limit
                ):
                    i = _slot(grid, c * 2 + wp.vec3i(ox, oy, oz))
                    odd = (ox & 1) + (oy & 1) + (oz & 1)
                    if odd == 0:
                        if _claim(grid, i, wp.static(NodeState.KNOWN)):
                            grid.values[i] = band.values[_slot(band, c + wp.vec3i(ox / 2, oy / 2, oz / 2))]
                    else:
                        reach = bound * wp.sqrt(float(odd))
                        lower_bound = float(0.0)
                        inferred = float(0.0)
                        for k in range(8):
                            q = _corner(k)
                            nearest = (
                                ((ox & 1) == 1 or q[0] * 2 == ox)
                                and ((oy & 1) == 1 or q[1] * 2 == oy)
                                and ((oz & 1) == 1 or q[2] * 2 == oz)
                            )
                            if nearest and wp.abs(corners[k]) - reach > lower_bound:
                                lower_bound = wp.abs(corners[k]) - reach
                                inferred = wp.where(corners[k] >= 0.0, lower_bound, -lower_bound)
                        if lower_bound > 0.0:
                            if _claim(grid, i, wp.static(NodeState.INFERRED)):
                                grid.values[i] = inferred
                        else:
                            old = wp.atomic_cas(grid.state, i, wp.static(NodeState.UNSEEN), wp.static(NodeState.NEEDED))
                            if old == wp.static(NodeState.UNSEEN):
                                _push(chunk, i)
                            elif old == wp.static(NodeState.INFERRED):
                                _queue(grid, i, chunk)  # another cell's bound inferred it, this one cannot


@wp.func
def _node_27(q: wp.vec3i, k: int) -> int:
    # Index in a stride-2 cell's 3^3 grid nodes of corner k of its grid cell q.
    o = q + _corner(k)
    return (o[0] * 3 + o[1]) * 3 + o[2]


@wp.kernel(enable_backward=False)
def _classify_kernel(chunk: _Chunk, grid: _Nodes, tables: _Tables, limit: int, out_flags: wp.array(dtype=wp.int32)):
    # The 8 grid cells of each kept stride-2 cell: flag those with a sign change and queue the inferred
    # ends of their crossing edges (vertices interpolate evaluated values only).
    t = chunk.offset + wp.tid()
    c = chunk.cells[t] * 2
    slots = _vec27i()
    nodes = _vec27()
    for ox in range(3):
        for oy in range(3):
            for oz in range(3):
                n = c + wp.vec3i(ox, oy, oz)
                if n[0] <= limit + 1 and n[1] <= limit + 1 and n[2] <= limit + 1:
                    j = (ox * 3 + oy) * 3 + oz
                    slots[j] = _slot(grid, n)
                    nodes[j] = grid.values[slots[j]]
    for q in range(8):
        o = _corner(q)
        cell = c + o
        flag = int(0)
        if cell[0] <= limit and cell[1] <= limit and cell[2] <= limit:
            v = _vec8()
            for k in range(8):
                v[k] = nodes[_node_27(o, k)]
            code = _case(v)
            if code != 0 and code != 255:
                flag = 1
                for e in range(12):
                    a = tables.edge_lower[e]
                    b = tables.edge_upper[e]
                    if _crosses(v[a], v[b]):
                        _queue(grid, slots[_node_27(o, a)], chunk)
                        _queue(grid, slots[_node_27(o, b)], chunk)
        out_flags[8 * t + q] = flag


@wp.kernel(enable_backward=False)
def _corner_slots_kernel(cells: wp.array(dtype=wp.vec3i), store: _Nodes, out_slots: wp.array(dtype=_vec8i)):
    # The store slots of each cell's 8 corners.
    slots = _vec8i()
    for k in range(8):
        slots[k] = _slot(store, cells[wp.tid()] + _corner(k))
    out_slots[wp.tid()] = slots


@wp.struct
class _Surface:
    # What the surface kernels read: the crossing grid cells, the store slots of their corners, the store's
    # values, the last grid cell per axis, and the cube's tables.
    cells: wp.array(dtype=wp.vec3i)
    slots: wp.array(dtype=_vec8i)
    values: wp.array(dtype=float)
    limit: int
    tables: _Tables


@wp.func
def _gather(values: wp.array(dtype=float), slots: _vec8i) -> _vec8:
    # Corner values of a crossing cell from the store slots of its corners.
    v = _vec8()
    for k in range(8):
        v[k] = values[slots[k]]
    return v


@wp.func
def _owns(c: wp.vec3i, n: wp.vec3i, axis: int, limit: int) -> bool:
    # The cell that emits the vertex of grid edge (n, axis): cell n, clamped into the grid across the edge.
    return (
        (axis == 0 or wp.min(n[0], limit) == c[0])
        and (axis == 1 or wp.min(n[1], limit) == c[1])
        and (axis == 2 or wp.min(n[2], limit) == c[2])
        and n[axis] == c[axis]
    )


@wp.kernel(enable_backward=False)
def _count_kernel(
    offset: int,
    surface: _Surface,
    band: _Nodes,
    band_kept: wp.array(dtype=wp.int32),
    out_vertices: wp.array(dtype=wp.int32),
    out_faces: wp.array(dtype=wp.int32),
    out_open: wp.array(dtype=wp.int32),
):
    # Per crossing cell: the vertices it owns (crossing edges), its triangles, and its open faces: faces
    # with a sign change whose neighbour is a grid cell outside the kept stride-2 cells (the surface would
    # leave the band there: a region pruned with too small a bound).
    t = offset + wp.tid()
    c = surface.cells[t]
    v = _gather(surface.values, surface.slots[t])
    tables, limit = surface.tables, surface.limit
    count = int(0)
    for e in range(12):
        a = tables.edge_lower[e]
        if _crosses(v[a], v[tables.edge_upper[e]]) and _owns(c, c + _corner(a), tables.edge_axis[e], limit):
            count += 1
    code = _case(v)
    out_vertices[t] = count
    out_faces[t] = (tables.case_range[code + 1] - tables.case_range[code]) / 3
    open_faces = int(0)
    for axis in range(3):
        for side in range(2):
            outside = int(0)
            inside = int(0)
            for k in range(8):
                if _corner(k)[axis] == side:
                    if v[k] >= 0.0:
                        outside += 1
                    else:
                        inside += 1
            if outside > 0 and inside > 0:
                step = 2 * side - 1
                n = c + wp.vec3i(
                    wp.where(axis == 0, step, 0), wp.where(axis == 1, step, 0), wp.where(axis == 2, step, 0)
                )
                if n[axis] >= 0 and n[axis] <= limit:
                    j = _slot(band, wp.vec3i(n[0] >> 1, n[1] >> 1, n[2] >> 1))
                    if j < 0 or band_kept[j] == 0:
                        open_faces += 1
    out_open[t] = open_faces


@wp.kernel(enable_backward=False)
def _emit_vertices_kernel(
    offset: int,
    surface: _Surface,
    first: wp.array(dtype=wp.int32),
    lower: wp.vec3,
    spacing: float,
    out_vertices: wp.array(dtype=wp.vec3),
    out_edge_vertex: wp.array(dtype=wp.int32),
):
    # Owned crossing edges get a vertex at the linear zero crossing, interpolated as the dense extraction does.
    t = offset + wp.tid()
    c = surface.cells[t]
    corner_slots = surface.slots[t]
    v = _gather(surface.values, corner_slots)
    tables, limit = surface.tables, surface.limit
    k = first[t]
    for e in range(12):
        a = tables.edge_lower[e]
        b = tables.edge_upper[e]
        axis = tables.edge_axis[e]
        n0 = c + _corner(a)
        if _crosses(v[a], v[b]) and _owns(c, n0, axis, limit):
            n1 = c + _corner(b)
            p0 = lower + wp.vec3(float(n0[0]) * spacing, float(n0[1]) * spacing, float(n0[2]) * spacing)
            p1 = lower + wp.vec3(float(n1[0]) * spacing, float(n1[1]) * spacing, float(n1[2]) * spacing)
            out_vertices[k] = wp.lerp(p0, p1, wp.clamp((0.0 - v[a]) / (v[b] - v[a]), 0.0, 1.0))
            out_edge_vertex[3 * corner_slots[a] + axis] = k
            k += 1


@wp.kernel(enable_backward=False)
def _emit_faces_kernel(
    offset: int,
    surface: _Surface,
    first: wp.array(dtype=wp.int32),
    edge_vertex: wp.array(dtype=wp.int32),
    out_indices: wp.array(dtype=wp.int32),
):
    # Triangles of each crossing cell from Warp's case table, on the welded edge vertices.
    t = offset + wp.tid()
    corner_slots = surface.slots[t]
    code = _case(_gather(surface.values, corner_slots))
    tables = surface.tables
    start = tables.case_range[code]
    base = 3 * first[t]
    for i in range(start, tables.case_range[code + 1]):
        e = tables.triangles[i]
        out_indices[base + i - start] = edge_vertex[3 * corner_slots[tables.edge_lower[e]] + tables.edge_axis[e]]


# --- host side -----------------------------------------------------------------------------------


def _scan(flags: wp.array) -> tuple[wp.array, int]:
    """Inclusive scan of int32 flags and their total (host sync)."""
    scan = wp.empty_like(flags)
    wp.utils.array_scan(flags, scan, inclusive=True)
    return scan, int(scan[-1:].numpy()[0]) if flags.shape[0] else 0


def _flagged_children(cells: wp.array, flags: wp.array) -> wp.array:
    """The children of ``cells`` (8 per cell, in ``_corner`` order) whose flag is set, in order."""
    scan, total = _scan(flags)
    children = wp.empty(total, dtype=wp.vec3i, device=cells.device)
    wp.launch(
        _compact_children_kernel,
        dim=flags.shape[0],
        inputs=[cells, flags, scan],
        outputs=[children],
        device=cells.device,
    )
    return children


def _offsets(counts: wp.array) -> tuple[wp.array, int]:
    """Exclusive scan of int32 counts and their total (host sync)."""
    first = wp.empty_like(counts)
    wp.utils.array_scan(counts, first, inclusive=False)
    return first, int(first[-1:].numpy()[0] + counts[-1:].numpy()[0]) if counts.shape[0] else 0


def _bounds(coarse: wp.array, per_axis: int, shift: int, refine: float) -> _Bounds:
    """The coarse cells' bounds as kernels read them, for cells ``shift`` halvings finer."""
    bounds = _Bounds()
    bounds.coarse, bounds.per_axis, bounds.shift, bounds.refine = coarse, per_axis, shift, refine
    return bounds


def _launch_queueing(kernel, cells: wp.array, per_cell: int, inputs: list) -> tuple[wp.array, int]:
    """Launch a kernel that queues up to ``per_cell`` store nodes per cell: (queued nodes, count).

    The cells are split in chunks, one per CPU thread (one launch on a GPU), each queueing into its own
    region with its own counter. On the CPU Warp's atomics are plain read-modify-writes, so two threads
    may both claim a node on the boundary between their chunks: it is then evaluated twice, harmlessly.
    """
    device = cells.device
    n = cells.shape[0]
    chunks = min(cpu_workers(), max(1, n // 4096)) if device.is_cpu else 1
    size = -(-n // chunks)
    counters = wp.zeros(chunks, dtype=wp.int32, device=device)
    queued = wp.empty(max(1, n * per_cell), dtype=wp.int32, device=device)

    def run(index: int) -> None:
        start, stop = index * size, min(n, (index + 1) * size)
        chunk = _Chunk()
        chunk.cells, chunk.offset, chunk.index, chunk.base = cells, start, index, start * per_cell
        chunk.counters, chunk.queued = counters, queued
        wp.launch(kernel, dim=stop - start, inputs=[chunk, *inputs], device=device)

    run_chunked(
        str(device),
        chunks,
        lambda first, last: [run(index) for index in range(first, last)],
        chunks_per_worker=1,
        min_chunk=1,
    )
    counts = [int(count) for count in counters.numpy()]  # host sync
    if chunks == 1:
        return queued, counts[0]
    nodes = wp.empty(max(1, sum(counts)), dtype=wp.int32, device=device)
    position = 0
    for chunk, count in enumerate(counts):
        if count:  # wp.copy reads a count of 0 as "everything"
            wp.copy(nodes, queued, position, chunk * size * per_cell, count)
        position += count
    return nodes, position


class _Store:
    """Values on the nodes of one level, in bricks of 8^3 nodes allocated where ``cells`` need them.

    Node n of the level is grid node ``stride * n``. The bricks holding nodes ``scale * c`` to
    ``scale * c + span`` of every cell c are allocated; each node has a state (a :class:`NodeState`),
    a value, and on the coarsest level the gradient norm of the field.
    """

    def __init__(
        self, stride: int, nodes_per_axis: int, cells: wp.array, scale: int = 1, span: int = 1, norms: bool = False
    ):
        device = cells.device
        self.stride = stride
        self.bricks = -(-nodes_per_axis // BRICK)
        flags = wp.zeros(self.bricks**3, dtype=wp.int32, device=device)
        wp.launch(
            _mark_bricks_kernel,
            dim=cells.shape[0],
            inputs=[cells, scale, span, self.bricks],
            outputs=[flags],
            device=device,
        )
        scan, count = _scan(flags)
        self.table = wp.full(self.bricks**3, -1, dtype=wp.int32, device=device)
        self.origins = wp.empty(count, dtype=wp.vec3i, device=device)
        wp.launch(
            _assign_bricks_kernel,
            dim=flags.shape[0],
            inputs=[flags, scan, self.bricks],
            outputs=[self.table, self.origins],
            device=device,
        )
        size = count * BRICK**3
        self.values = wp.empty(size, dtype=float, device=device)
        self.state = wp.zeros(size, dtype=wp.int32, device=device)
        self.norms = wp.empty(size if norms else 0, dtype=float, device=device)
        self.nodes = _Nodes()  # what kernels read
        self.nodes.table, self.nodes.bricks = self.table, self.bricks
        self.nodes.values, self.nodes.state = self.values, self.state

    def claim_corners(self, cells: wp.array, parent: "_Store | None") -> tuple[wp.array, int]:
        """Copy the corners of ``cells`` from ``parent`` where it has them; the rest: (queued nodes, count)."""
        source = parent or self
        return _launch_queueing(_claim_corners_kernel, cells, 8, [self.nodes, source.nodes, parent is not None])


@dataclass
class Sampler:
    """Evaluates queued store nodes of one shape's field on the grid ``lower + spacing * index``; counts them."""

    field: object
    params: wp.array
    shape: int
    lower: float
    spacing: float
    clip_radius: float | None
    evaluations: int = 0

    def evaluate(self, store: _Store, nodes: wp.array, count: int, gradients: bool = False, check: bool = False) -> int:
        """Values (and gradient norms) of the first ``count`` queued nodes into ``store``.

        Returns, with ``check``, how many values contradict the sign the store inferred for them.
        """
        if count == 0:
            return 0
        device = self.params.device
        nodes = nodes[:count]
        points = wp.empty(count, dtype=wp.vec3, device=device)
        lower = wp.vec3(self.lower, self.lower, self.lower)
        wp.launch(
            _node_points_kernel,
            dim=count,
            inputs=[nodes, store.origins, store.stride, lower, self.spacing],
            outputs=[points],
            device=device,
        )
        values = wp.empty(count, dtype=float, device=device)
        self.evaluations += count
        if gradients:
            gradient = wp.empty(count, dtype=wp.vec3, device=device)
            launch_field(self.field, self.params, points, values, gradient, first_shape=self.shape)
            clip = self.clip_radius is not None
            wp.launch(
                _store_coarse_kernel,
                dim=count,
                inputs=[nodes, points, values, gradient, clip, float(self.clip_radius or 0.0)],
                outputs=[store.values, store.state, store.norms],
                device=device,
            )
            return 0
        launch_field(self.field, self.params, points, values, first_shape=self.shape, clip_radius=self.clip_radius)
        flips = wp.zeros(1, dtype=wp.int32, device=device)
        wp.launch(
            _store_values_kernel,
            dim=count,
            inputs=[nodes, values, check],
            outputs=[store.values, store.state, flips],
            device=device,
        )
        return int(flips.numpy()[0]) if check else 0  # host sync


@dataclass
class Band:
    """The crossing grid cells a narrow band found, the stores they read, and its sign check."""

    cells: wp.array  # (c,) vec3i grid cells with a sign change
    slots: wp.array  # (c,) 8 store slots of their corners in ``grid``
    grid: _Store  # grid nodes (evaluated at both ends of every crossing edge)
    coarse: _Store  # the stride-2 level, ``kept`` marking its kept cells (by lower corner)
    kept: wp.array
    sign_flips: int  # inferred signs an evaluation contradicted: a bound that does not hold


@dataclass
class Coarse:
    """The narrow band's coarsest level (``COARSE_CELLS`` cells per axis, stride 2^level): every node evaluated."""

    level: int
    per_axis: int  # coarse cells per axis
    cells: wp.array  # (per_axis^3,) vec3i, x-major
    store: _Store  # values (and gradient norms for local bounds)


def evaluate_coarse(sampler: Sampler, resolution: int, gradients: bool) -> Coarse:
    """Evaluate the coarsest level, with gradient norms for local bounds (once: retries with larger bounds reuse it)."""
    device = sampler.params.device
    limit = resolution - 2  # last grid cell per axis
    level = max(1, limit.bit_length() - COARSE_CELLS.bit_length() + 1)  # 2^(level + 5) >= limit + 1 cells
    per_axis = limit // (1 << level) + 1
    cells = wp.empty(per_axis**3, dtype=wp.vec3i, device=device)
    wp.launch(_coarse_cells_kernel, dim=cells.shape[0], inputs=[per_axis], outputs=[cells], device=device)
    store = _Store(1 << level, per_axis + 1, cells, norms=gradients)
    nodes, count = store.claim_corners(cells, None)
    sampler.evaluate(store, nodes, count, gradients=gradients)
    return Coarse(level, per_axis, cells, store)


def find_band(
    sampler: Sampler, coarse: Coarse, resolution: int, lipschitz: float | None, margin: float, scale: float
) -> Band | None:
    """Crossing cells of the r^3 grid by coarse-to-fine pruning with ``scale`` x the local (or fixed) bounds.

    lipschitz : a bound of the field's gradient norm over the whole grid, or None for local bounds
    (``margin`` x the largest gradient norm at a coarse cell's corners, at least 1). None when every
    cell was pruned (no surface).
    """
    device = sampler.params.device
    limit = resolution - 2
    coarse_level, per_axis, cells, store = coarse.level, coarse.per_axis, coarse.cells, coarse.store
    stride = 1 << coarse_level
    refine = 0.0 if lipschitz else margin * scale  # local bounds also follow the secant slopes seen on the way down
    bounds = wp.empty(cells.shape[0], dtype=float, device=device)
    wp.launch(
        _local_bound_kernel,
        dim=cells.shape[0],
        inputs=[cells, store.nodes, store.norms, margin, float(lipschitz or 0.0), scale],
        outputs=[bounds],
        device=device,
    )

    for level in range(coarse_level, 1, -1):  # cells of stride 2^level -> children of half the stride
        half = stride // 2
        flags = wp.empty(8 * cells.shape[0], dtype=wp.int32, device=device)
        next_bounds = wp.clone(bounds)
        wp.launch(
            _children_kernel,
            dim=cells.shape[0],
            inputs=[
                cells,
                store.nodes,
                _bounds(bounds, per_axis, coarse_level - level, refine),
                stride * sampler.spacing,
                limit // half,
            ],
            outputs=[flags, next_bounds],
            device=device,
        )
        bounds = next_bounds
        children = _flagged_children(cells, flags)
        if children.shape[0] == 0:
            return None
        child_store = _Store(half, limit // half + 2, children)
        nodes, count = child_store.claim_corners(children, store)
        sampler.evaluate(child_store, nodes, count)
        cells, store, stride = children, child_store, half

    # Kept stride-2 cells -> the grid nodes inside them -> crossing grid cells.
    kept = wp.zeros(store.values.shape[0], dtype=wp.int32, device=device)
    wp.launch(_mark_cells_kernel, dim=cells.shape[0], inputs=[cells, store.nodes], outputs=[kept], device=device)
    grid = _Store(1, resolution, cells, scale=2, span=2)
    nodes, count = _launch_queueing(
        _resolve_grid_nodes_kernel,
        cells,
        19,
        [store.nodes, _bounds(bounds, per_axis, coarse_level - 1, refine), sampler.spacing, limit, grid.nodes],
    )
    sampler.evaluate(grid, nodes, count)
    flags = wp.empty(8 * cells.shape[0], dtype=wp.int32, device=device)
    nodes, count = _launch_queueing(_classify_kernel, cells, 19, [grid.nodes, _tables(str(device)), limit, flags])
    flips = sampler.evaluate(grid, nodes, count, check=True)
    crossing = _flagged_children(cells, flags)
    slots = wp.empty(crossing.shape[0], dtype=_vec8i, device=device)
    wp.launch(
        _corner_slots_kernel, dim=crossing.shape[0], inputs=[crossing, grid.nodes], outputs=[slots], device=device
    )
    return Band(crossing, slots, grid, store, kept, flips)


def band_surface(band: Band, resolution: int, lower: float, upper: float) -> tuple[wp.array, wp.array] | None:
    """Marching cubes on the crossing cells of a band of the r^3 grid over [lower, upper]^3.

    Returns welded vertices ((v,) vec3, one per crossed grid edge, placed as the dense extraction
    places them) and flat triangle indices ((3 f,) int32, counter-clockwise seen from outside).

    None when a crossing cell has an open face (the surface leaves the band: a wrongly pruned region).
    Launches are split over CPU threads (these kernels write disjoint outputs, no atomics).
    """
    grid, device, n = band.grid, band.cells.device, band.cells.shape[0]
    surface = _Surface()
    surface.cells, surface.slots, surface.values = band.cells, band.slots, grid.values
    surface.limit, surface.tables = resolution - 2, _tables(str(device))
    spacing = _vertex_spacing(resolution, lower, upper)

    def chunked(kernel, inputs, outputs):
        run_chunked(
            str(device),
            n,
            lambda start, stop: wp.launch(
                kernel, dim=stop - start, inputs=[start, *inputs], outputs=outputs, device=device
            ),
        )

    vertex_counts, face_counts, open_faces = (wp.empty(n, dtype=wp.int32, device=device) for _ in range(3))
    chunked(
        _count_kernel,
        [surface, band.coarse.nodes, band.kept],
        [vertex_counts, face_counts, open_faces],
    )
    if open_faces.numpy().any():  # host sync
        return None
    first_vertex, vertex_count = _offsets(vertex_counts)
    first_face, face_count = _offsets(face_counts)
    vertices = wp.empty(vertex_count, dtype=wp.vec3, device=device)
    edge_vertex = wp.empty(3 * grid.values.shape[0], dtype=wp.int32, device=device)
    chunked(
        _emit_vertices_kernel,
        [surface, first_vertex, wp.vec3(lower, lower, lower), spacing],
        [vertices, edge_vertex],
    )
    indices = wp.empty(3 * face_count, dtype=wp.int32, device=device)
    chunked(
        _emit_faces_kernel,
        [surface, first_face, edge_vertex],
        [indices],
    )
    return vertices, indices


def _vertex_spacing(resolution: int, lower: float, upper: float) -> float:
    """The cell size ``IsoSurfaceMarchingCubes`` places vertices with (float32 arithmetic), for identical vertices."""
    return float((np.float32(upper) - np.float32(lower)) / np.float32(resolution - 1))
