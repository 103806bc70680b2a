"""A 3D viewport's view as the render API's camera, and the tracer's depth as the viewport's depth (pure
math: numpy, no bpy).

Blender gives a viewport region a ``view_matrix`` (world to view, rigid) and a ``window_matrix`` (view to
clip space, OpenGL conventions: the view looks down its -Z, NDC x, y, z in [-1, 1]); both row-major 4x4 as
``[list(row) for row in matrix]`` reads a ``mathutils.Matrix``. The render API's camera (docs/api.md) is
Blender's camera model: square pixels, the image centred on the view axis, clip distances >= 0. A
viewport's frustum can be off centre (camera view: the frame panned, lens shift) and an orthographic
viewport clips from a negative distance, so :func:`view_frame` renders a centred image that covers the
region's frustum (wider where the frustum is off centre), from an origin moved back along the view axis
where needed, and says where that image lies in the region's NDC: drawn there, each pixel lands where
the viewport projects what it shows. :func:`window_depth` turns the tracer's depth (distance along the
view axis, inf on misses) into the window depth [0, 1] the viewport's depth buffer holds.

    frame = view_frame(view_matrix, window_matrix, region_width, region_height, scale=0.25)  # a coarse frame
    client.render(objects, width=frame.width, height=frame.height, camera=frame.camera, format="npz")
    depth01 = window_depth(npz["depth"], frame)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SENSOR_WIDTH = 36.0  # mm; with sensor_fit HORIZONTAL the lens alone sets the field of view
MAX_SIDE = 16384  # the render API's limit per side
COVER_LIMIT = 4.0  # at most this many times the region's pixels for an off-centre frustum (else coarser)


@dataclass(frozen=True)
class ViewFrame:
    """What to render for a viewport region and where it goes.

    camera: the render API's camera (``matrix_world`` row-major camera to world); width, height: pixels
    to render; ndc_rect: (left, bottom, right, top) of the rendered image in the region's NDC (it may
    reach outside [-1, 1]); depth_offset: added to the tracer's depth it gives the distance along the
    view axis from the view's own origin; window_matrix: the region's, row-major (for the depth).
    """

    camera: dict
    width: int
    height: int
    ndc_rect: tuple[float, float, float, float]
    depth_offset: float
    window_matrix: tuple[tuple[float, ...], ...]

    @property
    def perspective(self) -> bool:
        return self.camera["type"] == "PERSP"


def is_perspective(window_matrix) -> bool:
    """A perspective projection's last row is (0, 0, -1, 0); an orthographic one's (0, 0, 0, 1)."""
    return abs(float(np.asarray(window_matrix, dtype=np.float64)[3, 3])) < 0.5


def clip_range(window_matrix) -> tuple[float, float]:
    """(near, far) distances along the view axis of a projection (an orthographic viewport's near is negative)."""
    m = np.asarray(window_matrix, dtype=np.float64)
    a, b = m[2, 2], m[2, 3]
    if is_perspective(m):
        return b / (a - 1.0), b / (a + 1.0)
    return (b + 1.0) / a, (b - 1.0) / a


def view_frame(
    view_matrix, window_matrix, width: int, height: int, scale: float = 1.0, cover_limit: float = COVER_LIMIT
) -> ViewFrame:
    """The render request for a ``width`` x ``height`` region seen through ``view_matrix`` / ``window_matrix``
    at ``scale`` times the region's resolution (0.25: a coarse frame). ValueError for a degenerate view."""
    v = np.asarray(view_matrix, dtype=np.float64)
    p = np.asarray(window_matrix, dtype=np.float64)
    if v.shape != (4, 4) or p.shape != (4, 4) or not (np.isfinite(v).all() and np.isfinite(p).all()):
        raise ValueError("view and window matrices must be finite 4x4 matrices")
    if width < 1 or height < 1 or not scale > 0:
        raise ValueError(f"need a region of at least one pixel and a positive scale, got {width}x{height}, {scale}")
    perspective = is_perspective(p)
    sx, sy = p[0, 0], p[1, 1]
    if not (sx > 0 and sy > 0):
        raise ValueError("the window matrix has no positive x and y scale")
    # NDC x = sx * u + ox on the image plane (u = x / -z at unit distance in perspective, x in orthographic)
    ox, oy = (-p[0, 2], -p[1, 2]) if perspective else (p[0, 3], p[1, 3])
    # one square pixel (image plane units): the finer of the region's two, at the asked scale
    pixel = min(2.0 / (sx * width), 2.0 / (sy * height)) / scale
    half_x, half_y = (1.0 + abs(ox)) / sx, (1.0 + abs(oy)) / sy  # a centred image covering the region
    budget = cover_limit * max(1.0, width * scale) * max(1.0, height * scale)
    pixel = max(pixel, math.sqrt(4.0 * half_x * half_y / budget), 2.0 * max(half_x, half_y) / MAX_SIDE)
    # whole pixels; a thousandth of one short is float noise (Blender's matrices are float32), not a column
    columns = max(1, math.ceil(2.0 * half_x / pixel - 1e-3))
    rows = max(1, math.ceil(2.0 * half_y / pixel - 1e-3))
    extent_x, extent_y = 0.5 * columns * pixel, 0.5 * rows * pixel
    ndc_rect = (-sx * extent_x + ox, -sy * extent_y + oy, sx * extent_x + ox, sy * extent_y + oy)

    near, far = clip_range(p)
    if not far > near:
        raise ValueError(f"the window matrix clips nothing (near {near:g}, far {far:g})")
    to_world = np.linalg.inv(v)
    back = max(0.0, -near)  # an orthographic view sees behind its origin: start the rays further back
    to_world = to_world @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, back], [0, 0, 0, 1]], dtype=np.float64)
    width_units = columns * pixel
    camera = {
        "matrix_world": [[float(x) for x in row] for row in to_world],
        "type": "PERSP" if perspective else "ORTHO",
        "lens": SENSOR_WIDTH / width_units if perspective else 50.0,
        "sensor_width": SENSOR_WIDTH,
        "sensor_fit": "HORIZONTAL",
        "ortho_scale": 1.0 if perspective else width_units,
        "clip_start": near + back,
        "clip_end": far + back,
    }
    return ViewFrame(camera, columns, rows, ndc_rect, -back, tuple(tuple(float(x) for x in row) for row in p))


def window_depth(depth: np.ndarray, frame: ViewFrame) -> np.ndarray:
    """The tracer's ``depth`` ((h, w) float32 along the view axis from the frame's camera, inf on misses) as
    window depth (h, w) float32 in [0, 1] under the frame's window matrix (1, the far plane, on misses)."""
    p = np.asarray(frame.window_matrix, dtype=np.float64)
    distance = np.asarray(depth, dtype=np.float64) + frame.depth_offset
    with np.errstate(divide="ignore", invalid="ignore"):
        if frame.perspective:
            ndc = -p[2, 2] + p[2, 3] / distance
        else:
            ndc = -p[2, 2] * distance + p[2, 3]
    out = np.clip(0.5 * ndc + 0.5, 0.0, 1.0)
    out[~np.isfinite(distance) | ~np.isfinite(out)] = 1.0
    return out.astype(np.float32)


def frame_key(view_matrix, window_matrix, width: int, height: int) -> tuple:
    """What identifies a view (matrices rounded so that float noise is no change)."""
    return (
        width,
        height,
        tuple(round(float(x), 6) for row in view_matrix for x in row),
        tuple(round(float(x), 6) for row in window_matrix for x in row),
    )
