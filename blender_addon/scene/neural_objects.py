"""Neural objects in the scene: adding library shapes as neural objects, making sure the service knows
their shape, re-extracting proxies and rendering a sphere-traced preview from the scene camera.

Each workflow is split for :mod:`..background.workers`: a main-thread part reads bpy into plain data (a
:class:`StoredShape` per object), a worker part does the HTTP (``*_remote``: never bpy), and a
main-thread part applies the answer, finding the objects again by name (they may have gone meanwhile).

A neural object is a mesh object whose mesh is a marching-cubes proxy of the shape in the shape's source
frame, carrying the shape in custom properties: ``neural_shape_h5`` (the ``.h5`` bytes, so the shape
survives save/reload/append and can be re-imported into any service), ``neural_shape_id``,
``neural_resolution`` and the fit metrics; its part in the preview's CSG is ``object.neural_shapes``.
"""

from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np
from mathutils import Matrix

from ..client.client import Client
from ..client.errors import ServiceError
from ..errors import LocalError
from .mesh_data import mesh_from_arrays

NORMALISED_RADIUS = 0.9  # a shape lies inside this radius of its normalised frame (docs/api.md)


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
        fetched.append(
            FetchedShape(
                shape_id,
                shape.name,
                dict(shape.metrics),
                tuple(shape.transform["centre"]),
                2 * NORMALISED_RADIUS / shape.transform["scale"],
                vertices,
                faces,
                client.download_shape(shape_id),
                resolution,
            )
        )
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


@dataclass(frozen=True)
class StoredShape:
    """A neural object's shape as read on the main thread: what a worker needs to make sure the service has it."""

    object_name: str
    shape_id: str  # "" when it was never on a service
    h5: bytes
    name: str  # the library name, should it be imported


def stored_shape(obj: bpy.types.Object) -> StoredShape:
    """Read a neural object's shape (main thread)."""
    return StoredShape(
        obj.name, str(obj.get("neural_shape_id", "")), bytes(obj["neural_shape_h5"]), obj.name.removesuffix(" (neural)")
    )


def ensure_on_service(client: Client, stored: StoredShape) -> str:
    """The shape's id on this service, importing the stored ``.h5`` bytes when the service has never seen
    it (HTTP only: a worker). The bytes are untrusted (a shared .blend): the service validates them."""
    if stored.shape_id:
        try:
            client.shape(stored.shape_id)
            return stored.shape_id
        except ServiceError as error:
            if error.status not in (400, 404):
                raise
    return client.import_shape(stored.h5, name=stored.name).id


def find_object(stored: StoredShape) -> bpy.types.Object | None:
    """The neural object ``stored`` was read from, if it is still there with the same shape (main thread)."""
    obj = bpy.data.objects.get(stored.object_name)
    if obj is None or not is_neural(obj) or str(obj.get("neural_shape_id", "")) != stored.shape_id:
        return None
    return obj


def remember_ids(imported: list[tuple[StoredShape, str]]) -> None:
    """Keep the ids a worker got for objects' shapes, so the next call needs no import (main thread; an
    object that went or is linked from a library is skipped: this is only a cache)."""
    for stored, shape_id in imported:
        obj = find_object(stored)
        if obj is not None and obj.library is None and shape_id != stored.shape_id:
            obj["neural_shape_id"] = shape_id


@dataclass(frozen=True)
class Extraction:
    """What Re-extract asks for: the objects' shapes, marching cubes ``resolution`` and ``method``."""

    shapes: list[StoredShape]
    resolution: int
    method: str


def re_extract_remote(client: Client, request: Extraction) -> list[tuple[StoredShape, str, np.ndarray, np.ndarray]]:
    """(shape, id on the service, vertices (v, 3) float32, faces (f, 3) int32 in the source frame) per object (a worker)."""
    meshes = []
    for stored in request.shapes:
        shape_id = ensure_on_service(client, stored)
        vertices, faces, _ = client.mesh(shape_id, resolution=request.resolution, method=request.method).numpy()
        meshes.append((stored, shape_id, vertices, faces))
    return meshes


def apply_re_extract(request: Extraction, meshes: list[tuple[StoredShape, str, np.ndarray, np.ndarray]]) -> str:
    """Replace the proxy meshes of the objects still there (main thread); returns the panel's line."""
    replaced = 0
    for stored, _, vertices, faces in meshes:
        obj = find_object(stored)
        if obj is None:
            continue
        old = obj.data
        obj.data = mesh_from_arrays(old.name, vertices, faces)
        obj["neural_resolution"] = request.resolution
        if old.users == 0:
            bpy.data.meshes.remove(old)
        replaced += 1
    remember_ids([(stored, shape_id) for stored, shape_id, _, _ in meshes])
    return f"re-extracted {replaced} object(s) at {request.resolution}^3 ({request.method})"


def camera_spec(scene: bpy.types.Scene) -> dict:
    """The scene camera as the render API takes it (Blender's own model: lens, sensor fit, ortho scale, clip)."""
    camera = scene.camera
    if camera is None or camera.type != "CAMERA":
        raise LocalError("the scene has no active camera")
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


@dataclass(frozen=True)
class Preview:
    """What Render Preview asks for, read on the main thread: the objects (shape, world matrix, CSG), the
    camera and the image size in pixels."""

    shapes: list[StoredShape]
    objects: list[dict]  # the render API's objects without "shape"
    camera: dict
    width: int
    height: int


def preview_request(scene: bpy.types.Scene, objects: list[bpy.types.Object]) -> Preview:
    """Read the preview's inputs (main thread); :class:`.LocalError` without objects or camera."""
    if not objects:
        raise LocalError("no visible neural objects to render")
    scale = scene.render.resolution_percentage / 100
    specs = [
        {
            "matrix_world": [list(row) for row in obj.matrix_world],
            "operation": obj.neural_shapes.operation,
            "smooth_radius": obj.neural_shapes.smooth_radius,
        }
        for obj in objects
    ]
    return Preview(
        [stored_shape(obj) for obj in objects],
        specs,
        camera_spec(scene),
        max(1, int(scene.render.resolution_x * scale)),
        max(1, int(scene.render.resolution_y * scale)),
    )


def render_remote(client: Client, request: Preview) -> tuple[list[tuple[StoredShape, str]], np.ndarray]:
    """Render the preview (a worker): the shapes' ids on the service and (height, width, 4) float32 linear
    RGBA, bottom row first as Blender stores images."""
    ids = [(stored, ensure_on_service(client, stored)) for stored in request.shapes]
    specs = [{"shape": shape_id, **spec} for (_, shape_id), spec in zip(ids, request.objects)]
    rendered = client.render(specs, width=request.width, height=request.height, camera=request.camera, format="rgba")
    pixels = np.frombuffer(rendered.data, dtype="<f4").reshape(rendered.height, rendered.width, 4)
    return ids, np.ascontiguousarray(pixels[::-1])


def show_preview(pixels: np.ndarray, image_name: str = "Neural Preview") -> bpy.types.Image:
    """Put rendered pixels ((height, width, 4) float32, bottom row first) into an Image, shown in the
    first Image Editor (main thread)."""
    height, width = pixels.shape[:2]
    image = bpy.data.images.get(image_name)
    if image is None or tuple(image.size) != (width, height):
        if image is not None:
            bpy.data.images.remove(image)
        image = bpy.data.images.new(image_name, width, height, alpha=True, float_buffer=True)
    image.pixels.foreach_set(pixels.ravel())
    image.update()
    editors = (a for w in bpy.context.window_manager.windows for a in w.screen.areas if a.type == "IMAGE_EDITOR")
    editor = next(editors, None)
    if editor is not None:
        editor.spaces.active.image = image
    return image
