"""Where new neural objects go: world matrices for shapes between two objects, in a row, or at a point.

A neural object's mesh lies in its shape's source frame, around the shape's ``centre``; placing the
shape *at* a point moves that centre there.
"""

from __future__ import annotations

from collections.abc import Sequence

from mathutils import Matrix, Vector

ROW_GAP = 0.25  # space between neighbours in a row, as a fraction of the largest shape's size


def between(a: Matrix, b: Matrix, times: Sequence[float]) -> list[Matrix]:
    """For each t, the matrix that far from ``a`` to ``b`` (0 = a, 1 = b): locations evenly along the line,
    rotations and scales blended (mathutils' polar-decomposition lerp)."""
    return [a.lerp(b, t) for t in times]


def centred_at(location: Vector, centre: Sequence[float]) -> Matrix:
    """The translation that puts a shape's ``centre`` (source frame) at ``location`` (world)."""
    return Matrix.Translation(Vector(location) - Vector(centre))


def in_a_row(location: Vector, centres: Sequence[Sequence[float]], sizes: Sequence[float]) -> list[Matrix]:
    """Shapes side by side along world X, the row centred on ``location``; ``sizes`` are their diameters."""
    step = max(sizes, default=0.0) * (1 + ROW_GAP)
    first = -(len(centres) - 1) / 2
    return [
        centred_at(Vector(location) + Vector(((first + i) * step, 0.0, 0.0)), centre)
        for i, centre in enumerate(centres)
    ]
