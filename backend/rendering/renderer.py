"""Rendering neural shapes: a scene (Blender-like camera, placed objects with CSG), automatic framing,
and PNG output. JSON scenes are read by :mod:`backend.rendering.scene`; the sphere tracing itself is
``kernels.sphere_trace``.

Frames: each object's ``matrix_world`` maps its shape's *source* frame (the mesh it was fitted to) to
world space, as a Blender object's matrix does for an imported mesh; the shape's stored similarity
maps the source frame to the normalised frame its network is defined in. World up is +Z (Blender).
Depth is measured along the camera's viewing axis (Blender's Z pass convention for EEVEE / OpenGL).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from backend.errors import NeuralShapesError
from backend.files import write_atomically
from backend.shapes.frame import BOUNDING_RADIUS, EXTRACTION_RADIUS
from backend.shapes.shape_file import NeuralShape
from kernels.marching_cubes import extract_neural
from kernels.mlp_eval import neural_field
from kernels.sphere_trace import CSG, RayCamera, TraceObjects, TraceResult, TraceSettings, trace

MAX_SIDE = 16384
FRAMING_RESOLUTION = 32
MAX_PIXELS = 64 * 1024 * 1024
BLENDER_VIEW = (7.3589, -6.9258, 4.9583)  # direction from the target to Blender's default camera
DEFAULT_COLOUR = (0.8, 0.8, 0.8)
DEFAULT_SETTINGS = TraceSettings(epsilon=2e-4, occlusion_scale=0.1)  # lengths relative to the scene radius
OPERATIONS = {
    "union": CSG.UNION,
    "intersection": CSG.INTERSECTION,
    "difference": CSG.DIFFERENCE,
    "smooth_union": CSG.SMOOTH_UNION,
}


@dataclass(frozen=True)
class Camera:
    """A Blender camera: ``matrix_world`` (4, 4) camera-to-world (looks down local -Z, +Y up).

    Perspective: focal length ``lens`` (mm) over the sensor (mm); ``sensor_fit`` AUTO fits
    ``sensor_width`` to the larger image side, HORIZONTAL to the width, VERTICAL fits ``sensor_height``
    to the height. Orthographic: ``ortho_scale`` world units across the fitted side. Clip distances
    along the viewing axis, world units.
    """

    matrix_world: np.ndarray
    type: Literal["PERSP", "ORTHO"] = "PERSP"
    lens: float = 50.0
    sensor_width: float = 36.0
    sensor_height: float = 24.0
    sensor_fit: Literal["AUTO", "HORIZONTAL", "VERTICAL"] = "AUTO"
    ortho_scale: float = 7.3142
    clip_start: float = 0.1
    clip_end: float = 100.0

    def __post_init__(self) -> None:
        matrix = np.asarray(self.matrix_world, dtype=np.float64)
        if matrix.shape != (4, 4) or not np.isfinite(matrix).all() or abs(np.linalg.det(matrix[:3, :3])) < 1e-12:
            raise ValueError("camera matrix_world must be a finite, invertible 4x4 matrix")
        if self.type not in ("PERSP", "ORTHO") or self.sensor_fit not in ("AUTO", "HORIZONTAL", "VERTICAL"):
            raise ValueError(
                f"camera type must be PERSP or ORTHO and sensor_fit AUTO, HORIZONTAL or VERTICAL, got {self.type}, {self.sensor_fit}"
            )
        if min(self.lens, self.sensor_width, self.sensor_height, self.ortho_scale) <= 0:
            raise ValueError("camera lens, sensor sizes and ortho_scale must be positive")
        if not 0 <= self.clip_start < self.clip_end:
            raise ValueError(f"camera needs 0 <= clip_start < clip_end, got {self.clip_start}, {self.clip_end}")

    @staticmethod
    def look_at(position, target, **options) -> Camera:
        """A camera at ``position`` looking at ``target`` (world), +Z up (+Y when looking straight down)."""
        position, target = np.asarray(position, dtype=np.float64), np.asarray(target, dtype=np.float64)
        back = position - target
        if not np.linalg.norm(back) > 0:
            raise ValueError("camera position and look-at target coincide")
        back /= np.linalg.norm(back)
        up = np.array([0.0, 0.0, 1.0]) if abs(back[2]) < 0.999 else np.array([0.0, 1.0, 0.0])
        right = np.cross(up, back)
        right /= np.linalg.norm(right)
        matrix = np.eye(4)
        matrix[:3, 0], matrix[:3, 1], matrix[:3, 2], matrix[:3, 3] = right, np.cross(back, right), back, position
        return Camera(matrix, **options)

    def rays(self, width: int, height: int) -> RayCamera:
        """The tracer's view of this camera for a ``width`` x ``height`` image (scale removed from the matrix)."""
        horizontal = self.sensor_fit == "HORIZONTAL" or (self.sensor_fit == "AUTO" and width >= height)
        fitted = max(width if horizontal else height, 1)
        if self.type == "ORTHO":
            pixel = self.ortho_scale / fitted
        else:
            pixel = (self.sensor_height if self.sensor_fit == "VERTICAL" else self.sensor_width) / self.lens / fitted
        matrix = np.asarray(self.matrix_world, dtype=np.float64).copy()
        matrix[:3, :3] /= np.linalg.norm(matrix[:3, :3], axis=0)
        return RayCamera(matrix, self.type == "PERSP", pixel, width, height, self.clip_start, self.clip_end)


@dataclass(frozen=True)
class SceneObject:
    """A neural shape placed in the world: ``matrix_world`` (4, 4) maps its source frame to world."""

    shape: NeuralShape
    matrix_world: np.ndarray = field(default_factory=lambda: np.eye(4))
    operation: CSG = CSG.UNION  # with the objects before it; ignored for the first
    smooth_radius: float = 0.0  # world units, for SMOOTH_UNION
    colour: tuple[float, float, float] = DEFAULT_COLOUR  # linear RGB

    def shape_to_world(self) -> np.ndarray:
        """(4, 4) from the shape's normalised frame to world."""
        return np.asarray(self.matrix_world, dtype=np.float64) @ np.linalg.inv(self.shape.transform.matrix())


@dataclass(frozen=True)
class Scene:
    """Objects in CSG order, a camera (None: framed automatically) and tracer settings.

    Relative lengths in ``settings`` (epsilon, occlusion_scale) are fractions of the scene radius.
    """

    objects: list[SceneObject]
    camera: Camera | None = None
    settings: TraceSettings = DEFAULT_SETTINGS


def scene_sphere(objects: list[SceneObject]) -> tuple[np.ndarray, float]:
    """Centre (3,) and radius of a sphere around every object's bounding sphere (world units)."""
    centres, radii = [], []
    for obj in objects:
        matrix = obj.shape_to_world()
        centres.append(matrix[:3, 3])
        radii.append(BOUNDING_RADIUS * np.linalg.svd(matrix[:3, :3], compute_uv=False).max())
    centres, radii = np.array(centres), np.array(radii)
    centre = (np.min(centres - radii[:, None], axis=0) + np.max(centres + radii[:, None], axis=0)) / 2
    return centre, float(np.max(np.linalg.norm(centres - centre, axis=1) + radii))


def surface_sphere(objects: list[SceneObject]) -> tuple[np.ndarray, float]:
    """A sphere around the objects' actual surfaces (world units), from a coarse marching-cubes mesh of
    each shape (32^3, grown by one voxel); the bounding spheres where a shape's surface is empty."""
    points = []
    for obj in objects:
        surface = extract_neural(
            obj.shape.architecture, obj.shape.weights, FRAMING_RESOLUTION, "dense", clip_radius=EXTRACTION_RADIUS
        )
        vertices = surface.vertices if len(surface.vertices) else np.eye(3) * BOUNDING_RADIUS
        matrix = obj.shape_to_world()
        points.append(vertices @ matrix[:3, :3].T + matrix[:3, 3])
    points = np.concatenate(points)
    voxel = (
        2.0
        / (FRAMING_RESOLUTION - 1)
        * max(np.linalg.svd(o.shape_to_world()[:3, :3], compute_uv=False).max() for o in objects)
    )
    centre = (points.min(axis=0) + points.max(axis=0)) / 2
    return centre, float(np.linalg.norm(points - centre, axis=1).max() + voxel)


def frame_objects(
    objects: list[SceneObject], width: int, height: int, lens: float = 50.0, direction=BLENDER_VIEW
) -> Camera:
    """A perspective camera looking at the objects' surfaces from ``direction`` so they fill the view."""
    if not objects:
        return Camera.look_at(np.asarray(direction, dtype=np.float64), np.zeros(3), lens=lens)
    centre, radius = surface_sphere(objects)
    sensor = Camera(np.eye(4)).sensor_width
    half = np.arctan(sensor / 2 / lens * min(width, height) / max(width, height, 1))
    distance = 1.02 * radius / np.sin(half)
    offset = np.asarray(direction, dtype=np.float64)
    position = centre + offset / np.linalg.norm(offset) * distance
    return Camera.look_at(
        position, centre, lens=lens, clip_start=max(1e-4, (distance - radius) * 0.5), clip_end=(distance + radius) * 2
    )


def render(scene: Scene, width: int, height: int, device: str | None = None) -> TraceResult:
    """Sphere-trace a scene into a ``width`` x ``height`` image; see :class:`kernels.sphere_trace.TraceResult`.

    All objects must share one architecture (one fused kernel). A 0-pixel image or an empty scene gives
    empty outputs; sizes above ``MAX_SIDE`` per side or ``MAX_PIXELS`` in all raise ValueError.
    """
    check_size(width, height)
    if not scene.objects or width * height == 0:
        return TraceResult.empty(width, height)
    camera = scene.camera or frame_objects(scene.objects, width, height)
    architectures = {obj.shape.architecture for obj in scene.objects}
    if len(architectures) > 1:
        raise NeuralShapesError(
            "all shapes of a scene must share one architecture, got "
            + ", ".join(sorted(a.describe() for a in architectures))
        )
    nets = list({id(obj.shape): obj.shape for obj in scene.objects}.values())
    row = {id(shape): i for i, shape in enumerate(nets)}
    net = neural_field(architectures.pop())
    _, radius = scene_sphere(scene.objects)
    objects = TraceObjects(
        shape=np.array([row[id(obj.shape)] for obj in scene.objects]),
        local_to_world=np.stack([obj.shape_to_world() for obj in scene.objects]),
        operation=np.array([int(obj.operation) for obj in scene.objects]),
        smooth_radius=np.array([obj.smooth_radius for obj in scene.objects], dtype=np.float64),
        colour=np.array([obj.colour for obj in scene.objects], dtype=np.float64),
        radius=np.full(len(scene.objects), EXTRACTION_RADIUS),
    )
    settings = replace(
        scene.settings, epsilon=scene.settings.epsilon * radius, occlusion_scale=scene.settings.occlusion_scale * radius
    )
    return trace(
        net, net.pack([shape.weights for shape in nets]), objects, camera.rays(width, height), settings, device
    )


def check_size(width: int, height: int) -> None:
    if width < 0 or height < 0 or width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise ValueError(
            f"image size {width}x{height} is out of range (0 to {MAX_SIDE} per side, at most {MAX_PIXELS:,} pixels)"
        )


def parse_size(text: str) -> tuple[int, int]:
    """'512x512' -> (512, 512); positive sizes within the limits, else ValueError."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"size must look like 512x512, got '{text}'")
    width, height = int(parts[0]), int(parts[1])
    if width == 0 or height == 0:
        raise ValueError(f"size must be at least 1x1, got '{text}'")
    check_size(width, height)
    return width, height


def write_png(rgba: np.ndarray, path: Path) -> None:
    """Write linear RGBA (h, w, 4) float as an sRGB 8-bit PNG, atomically."""
    from PIL import Image

    rgba = np.clip(np.asarray(rgba, dtype=np.float64), 0.0, 1.0)
    if rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.shape[0] == 0 or rgba.shape[1] == 0:
        raise ValueError(f"a PNG needs a non-empty (h, w, 4) image, got {rgba.shape}")
    rgb = rgba[..., :3]
    srgb = np.where(rgb <= 0.0031308, 12.92 * rgb, 1.055 * rgb ** (1 / 2.4) - 0.055)
    pixels = np.round(np.concatenate([srgb, rgba[..., 3:]], axis=2) * 255).astype(np.uint8)
    png = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(png, format="PNG")
    write_atomically(Path(path), png.getvalue())
