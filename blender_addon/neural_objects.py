"""Neural objects in the scene: adding library shapes as neural objects, making sure the service knows
their shape, re-extracting proxies and rendering a sphere-traced preview from the scene camera.

A neural object is a mesh object whose mesh is a marching-cubes proxy of the shape in the shape's source
frame, carrying the shape in custom properties: ``neural_shape_h5`` (the ``.h5`` bytes, so the shape
survives save/reload/append and can be re-imported into any service), ``neural_shape_id``,
``neural_resolution`` and the fit metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np
from mathutils import Matrix

from .client.client import Client, ServiceError
from .mesh_data import mesh_from_arrays

NORMALISED_RADIUS = 0.9  # a shape lies inside this radius of its normalised frame (docs/api.md)

OPERATIONS = [
    ("union", "Union", "Add this shape"),
    ("difference", "Subtract", "Carve this shape out of the ones before it"),
    ("intersection", "Intersect", "Keep only what this shape shares with the ones before it"),
    ("smooth_union", "Smooth Union", "Blend into the ones before it with the smooth radius"),
]


@dataclass(frozen=True)
class FetchedShape:
    """What a neural object is made of, downloaded from the service: the record, the proxy mesh
    (vertices (v, 3) float32, faces (f, 3) int32, source frame) and the ``.h5`` bytes."""

    id: str
    name: str
    metrics: dict
    centre: tuple[float, float, float]  # of the shape in its source frame
    size: float  # diameter of its bounding sphere in the source frame
    vertices: np.ndarray
    faces: np.ndarray
    h5: bytes
    resolution: int


def fetch_shapes(client: Client, shape_ids: list[str], resolution: int) -> list[FetchedShape]:
    """Download library shapes with their proxy meshes at ``resolution`` (HTTP only: safe on a worker thread)."""
    fetched = []
    for shape_id in shape_ids:
        shape = client.shape(shape_id)
        vertices, faces, _ = client.mesh(shape_id, resolution=resolution).numpy()
        fetched.append(FetchedShape(
            shape_id, shape.name, dict(shape.metrics), tuple(shape.transform["centre"]), 2 * NORMALISED_RADIUS / shape.transform["scale"],
            vertices, faces, client.download_shape(shape_id), resolution,
        ))
    return fetched


def add_neural_object(shape: FetchedShape, collection: bpy.types.Collection, matrix_world: Matrix) -> bpy.types.Object:
    """A neural object named ``NAME (neural)`` for a fetched shape, linked into ``collection`` (main thread)."""
    name = f"{shape.name} (neural)"
    obj = bpy.data.objects.new(name, mesh_from_arrays(name, shape.vertices, shape.faces))
    obj["neural_shape_h5"] = shape.h5
    obj["neural_shape_id"] = shape.id
    obj["neural_resolution"] = shape.resolution
    for key, value in shape.metrics.items():
        if value is not None:
            obj[f"neural_{key}"] = float(value)
    obj.matrix_world = matrix_world
    collection.objects.link(obj)
    return obj


def is_neural(obj: bpy.types.Object) -> bool:
    return obj.type == "MESH" and "neural_shape_h5" in obj


def ensure_on_service(client: Client, obj: bpy.types.Object) -> str:
    """The object's shape id on this service, importing the stored ``.h5`` bytes when the service has never seen it."""
    shape_id = obj.get("neural_shape_id", "")
    if shape_id:
        try:
            client.shape(shape_id)
            return shape_id
        except ServiceError as error:
            if error.status not in (400, 404):
                raise
    shape = client.import_shape(bytes(obj["neural_shape_h5"]), name=obj.name.removesuffix(" (neural)"))
    obj["neural_shape_id"] = shape.id
    return shape.id


def re_extract(client: Client, obj: bpy.types.Object, resolution: int, method: str) -> None:
    """Replace the object's proxy mesh by a new marching-cubes extraction (source frame)."""
    arrays = client.mesh(ensure_on_service(client, obj), resolution=resolution, method=method)
    old = obj.data
    obj.data = mesh_from_arrays(old.name, *arrays.numpy()[:2])
    obj["neural_resolution"] = resolution
    if old.users == 0:
        bpy.data.meshes.remove(old)


def camera_spec(scene: bpy.types.Scene) -> dict:
    """The scene camera as the render API takes it (Blender's own model: lens, sensor fit, ortho scale, clip)."""
    camera = scene.camera
    if camera is None or camera.type != "CAMERA":
        raise ServiceError(0, "the scene has no active camera")
    data = camera.data
    return {
        "matrix_world": [list(row) for row in camera.matrix_world],
        "type": "ORTHO" if data.type == "ORTHO" else "PERSP",
        "lens": data.lens,
        "sensor_width": data.sensor_width,
        "sensor_height": data.sensor_height,
        "sensor_fit": data.sensor_fit,
        "ortho_scale": data.ortho_scale,
        "clip_start": data.clip_start,
        "clip_end": data.clip_end,
    }


def render_preview(client: Client, scene: bpy.types.Scene, objects: list[bpy.types.Object], image_name: str = "Neural Preview") -> bpy.types.Image:
    """Sphere-trace the given neural objects (world transforms, CSG settings) from the scene camera into an Image."""
    if not objects:
        raise ServiceError(0, "no visible neural objects to render")
    scale = scene.render.resolution_percentage / 100
    width, height = max(1, int(scene.render.resolution_x * scale)), max(1, int(scene.render.resolution_y * scale))
    specs = [
        {
            "shape": ensure_on_service(client, obj),
            "matrix_world": [list(row) for row in obj.matrix_world],
            "operation": obj.neural_operation,
            "smooth_radius": obj.neural_smooth_radius,
        }
        for obj in objects
    ]
    rendered = client.render(specs, width=width, height=height, camera=camera_spec(scene), format="rgba")
    pixels = np.frombuffer(rendered.data, dtype="<f4").reshape(rendered.height, rendered.width, 4)
    image = bpy.data.images.get(image_name)
    if image is None or tuple(image.size) != (rendered.width, rendered.height):
        if image is not None:
            bpy.data.images.remove(image)
        image = bpy.data.images.new(image_name, rendered.width, rendered.height, alpha=True, float_buffer=True)
    image.pixels.foreach_set(np.ascontiguousarray(pixels[::-1]).ravel())  # Blender stores the bottom row first
    image.update()
    return image
