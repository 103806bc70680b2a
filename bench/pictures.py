"""Tiles and sheets for the benchmarks' pictures, drawn by the project's own renderers: neural shapes by the
sphere tracer (as ``neural-shapes render`` draws them), meshes by the Warp ray caster with the same camera and
light (kernels.mesh_raycast), so a source mesh and its neural shape can stand side by side.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from backend.rendering.renderer import BLENDER_VIEW, Camera, Scene, SceneObject, render
from backend.shapes.frame import EXTRACTION_RADIUS
from backend.shapes.shape_file import NeuralShape
from kernels.mesh_raycast import cast

LENS = 50.0  # mm, over Blender's 36 mm sensor
MARGIN = 1.02  # the camera frames the sphere the tracer clips shapes to with 2% to spare
TEXT = 0.11  # label font height, fraction of the tile size
HEADER = 0.2  # height of a column-title band, fraction of the tile size
COLOUR = (0.30, 0.45, 0.75)  # linear RGB of every shape: a mid blue that stands out on white


def fixed_camera(size: int) -> Camera:
    """The one camera of every tile: Blender's default 3/4 view direction, framing the bounding sphere at the origin."""
    half_angle = np.arctan(Camera(np.eye(4)).sensor_width / 2 / LENS)
    distance = MARGIN * EXTRACTION_RADIUS / np.sin(half_angle)
    direction = np.asarray(BLENDER_VIEW) / np.linalg.norm(BLENDER_VIEW)
    return Camera.look_at(
        direction * distance, np.zeros(3), lens=LENS, clip_start=0.1 * distance, clip_end=3 * distance
    )


def render_tile(shape: NeuralShape, size: int, frame: NeuralShape | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A ``size`` x ``size`` linear RGBA tile (alpha 0 where no surface) of ``shape`` drawn in ``frame``'s normalised
    frame (default its own), and the hit points (size, size, 3) in that frame (NaN on misses)."""
    placement = (frame or shape).transform.matrix()  # source -> the drawing frame, which is the world here
    camera = fixed_camera(size)
    result = render(Scene([SceneObject(shape, placement, colour=COLOUR)], camera), size, size)
    rays = camera.rays(size, size)
    pixels = (np.arange(size) + 0.5 - 0.5 * size) * rays.pixel_size
    u, v = np.meshgrid(pixels, -pixels)  # row 0 at the top
    hit = result.object_id >= 0
    depth = np.where(hit, result.depth, 0.0)[..., None]  # along the viewing axis; inf on misses
    points = (np.stack([u, v, -np.ones_like(u)], axis=-1) * depth) @ rays.camera_to_world[
        :3, :3
    ].T + rays.camera_to_world[:3, 3]
    points[~hit] = np.nan
    return result.rgba, points


def mesh_tile(vertices: np.ndarray, faces: np.ndarray, size: int) -> np.ndarray:
    """A ``size`` x ``size`` linear RGBA tile of a mesh given in a normalised frame (bounding radius 0.9),
    from :func:`fixed_camera`, coloured and lit as :func:`render_tile` draws neural shapes."""
    rgba, _ = cast(vertices, faces, fixed_camera(size).rays(size, size), colour=COLOUR)
    return rgba


def sheet(rows: list[list[np.ndarray]], labels: list[str], size: int, titles: list[str] | None = None) -> np.ndarray:
    """Tiles (size, size, 4) in rows on white, each row's label on its left, optional column titles on top:
    an opaque linear RGBA image."""
    font = ImageFont.load_default(size=max(8, round(TEXT * size)))
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    label_width = max(measure.textlength(label, font=font) for label in labels) + 0.15 * size if any(labels) else 0
    left, top = int(np.ceil(label_width)), round(HEADER * size) if titles else 0
    columns = max(len(row) for row in rows)
    height, width = top + size * len(rows), left + size * columns
    rgb = np.ones((height, width, 3), np.float32)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            y, x = top + r * size, left + c * size
            alpha = tile[..., 3:]
            rgb[y : y + size, x : x + size] = tile[..., :3] * alpha + (1 - alpha)
    text = Image.new("L", (width, height))
    draw = ImageDraw.Draw(text)
    for r, label in enumerate(labels):
        draw.text((0.05 * size, top + (r + 0.5) * size), label, fill=255, font=font, anchor="lm")
    for c, title in enumerate(titles or []):
        draw.text((left + (c + 0.5) * size, top / 2), title, fill=255, font=font, anchor="mm")
    ink = np.asarray(text, np.float32)[..., None] / 255
    return np.concatenate([rgb * (1 - ink), np.ones((height, width, 1), np.float32)], axis=2)
