"""Neural objects in the scene: adding library shapes as neural objects, making sure the service knows
their shape, re-extracting proxies and rendering a sphere-traced preview from the scene camera.

Each workflow is split for :mod:`..background.workers`: a main-thread part reads bpy into plain data (a
:class:`StoredShape` per object), a worker part does the HTTP (``*_remote``: never bpy), and a
main-thread part applies the answer, finding the objects again by name (they may have gone meanwhile).

A neural object is a mesh object whose mesh is a marching-cubes proxy of the shape in the shape's source
frame (shaded smooth with the SDF's normals), pointing at its shape's shared datablock
(:mod:`.shape_store`: the ``.h5`` bytes once per shape, so it survives save/reload/append and can be
re-imported into any service). ``object.neural_shapes`` holds its proxy and render resolutions and its part
in the CSG of the preview and the neural viewport.
Re-extraction replaces the proxy's geometry inside its mesh datablock (:func:`.mesh_data.replace_geometry`),
so materials, modifiers and linked duplicates stay.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import bpy
import numpy as np
from mathutils import Matrix

from ..client.client import Client
from ..client.errors import ServiceError
from ..errors import LocalError
from .mesh_data import mesh_from_arrays, replace_geometry
from .shape_store import remember_service_id, service_id, shape_bytes, shape_datablock, shape_holder

NORMALISED_RADIUS = 0.9  # a shape lies inside this radius of its normalised frame (docs/api.md)


@dataclass(frozen=True)
class FetchedShape:
    """What a neural object is made of, downloaded from the service: the record, the proxy mesh
    (vertices (v, 3) float32, faces (f, 3) int32, unit vertex normals (v, 3), source frame) and the ``.h5`` bytes."""

    id: str
    name: str
    metrics: dict
    centre: tuple[float, float, float]  # of the shape in its source frame
    size: float  # diameter of its bounding sphere in the source frame
    vertices: np.ndarray
    faces: np.ndarray
    h5: bytes
    resolution: int
    normals: np.ndarray | None = None
    info: dict = field(default_factory=dict)  # shape_store.INFO_KEYS: source, family_id, architecture


def fetch_shapes(client: Client, shape_ids: list[str], resolution: int) -> list[FetchedShape]:
    """Download library shapes with their proxy meshes at ``resolution`` (HTTP only: safe on a worker thread)."""
    fetched = []
    for shape_id in shape_ids:
        shape = client.shape(shape_id)
        vertices, faces, normals = client.mesh(shape_id, resolution=resolution).numpy()
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
                normals,
                {
                    "name": shape.name,
                    "source": (shape.provenance or {}).get("source_name", ""),
                    "family_id": shape.family_id,
                    "architecture": describe_architecture(shape.architecture),
                },
            )
        )
    return fetched


def describe_architecture(architecture: dict) -> str:
    """The service's architecture record as one line, e.g. ``8 x 32 relu, tanh out, 7,553 parameters``."""
    sizes = architecture.get("layer_sizes") or []
    hidden = sizes[1:-1]
    layers = f"{len(hidden)} x {hidden[0]}" if hidden and len(set(hidden)) == 1 else " - ".join(map(str, hidden))
    return (
        f"{layers} {architecture.get('activation', '?')}, {architecture.get('output_activation', '?')} out, "
        f"{architecture.get('parameters', 0):,} parameters"
    )


def add_neural_object(
    shape: FetchedShape, collection: bpy.types.Collection, matrix_world: Matrix, render_resolution: int = 256
) -> bpy.types.Object:
    """A neural object named ``NAME (neural)`` for a fetched shape, linked into ``collection`` (main thread)."""
    name = f"{shape.name} (neural)"
    obj = bpy.data.objects.new(name, mesh_from_arrays(name, shape.vertices, shape.faces, shape.normals))
    settings = obj.neural_shapes
    settings.shape = shape_datablock(shape.h5, shape.name, shape.info, shape.metrics)
    remember_service_id(obj, shape.id)
    # Set only where they differ from the defaults: a set property is stored with each object (~200 bytes).
    for name, value in (
        ("viewport_resolution", shape.resolution),
        ("render_resolution", max(render_resolution, shape.resolution)),
    ):
        if getattr(settings, name) != value:
            setattr(settings, name, value)
    obj.matrix_world = matrix_world
    collection.objects.link(obj)
    return obj


def take_materials(target: bpy.types.Object, source: bpy.types.Object) -> None:
    """Give ``target`` the material slots of ``source``: the same materials, linked to the object or the
    data as there. Every face of a neural proxy uses the first slot (its faces match none of the source's)."""
    for slot in source.material_slots:
        target.data.materials.append(slot.material if slot.link == "DATA" else None)
    for mine, theirs in zip(target.material_slots, source.material_slots):
        if theirs.link == "OBJECT":
            mine.link = "OBJECT"
            mine.material = theirs.material


def is_neural(obj: bpy.types.Object) -> bool:
    return obj.type == "MESH" and shape_holder(obj) is not None


@dataclass(frozen=True)
class StoredShape:
    """A neural object's shape as read on the main thread: what a worker needs to make sure the service has it."""

    object_name: str
    shape_id: str  # "" when it was never on a service
    h5: bytes
    name: str  # the library name, should it be imported


def stored_shape(obj: bpy.types.Object) -> StoredShape:
    """Read a neural object's shape (main thread)."""
    return StoredShape(obj.name, service_id(obj), shape_bytes(obj), obj.name.removesuffix(" (neural)"))


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
    if obj is None or not is_neural(obj) or service_id(obj) != stored.shape_id:
        return None
    return obj


def remember_ids(imported: list[tuple[StoredShape, str]]) -> None:
    """Keep the ids a worker got for objects' shapes, so the next call needs no import (main thread; an
    object that went, or a shape linked from a library, is skipped: this is only a cache)."""
    for stored, shape_id in imported:
        obj = find_object(stored)
        if obj is not None and shape_id != stored.shape_id:
            remember_service_id(obj, shape_id)


@dataclass(frozen=True)
class Extraction:
    """What Re-extract asks for: the objects' shapes, each one's marching cubes resolution, and the ``method``."""

    shapes: list[StoredShape]
    resolutions: list[int]
    method: str


ExtractedMesh = tuple[StoredShape, str, np.ndarray, np.ndarray, np.ndarray]  # shape, id, vertices, faces, normals


def re_extract_remote(client: Client, request: Extraction) -> list[ExtractedMesh]:
    """(shape, id on the service, vertices (v, 3) float32, faces (f, 3) int32, normals (v, 3); source frame)
    per object (a worker)."""
    meshes = []
    for stored, resolution in zip(request.shapes, request.resolutions):
        shape_id = ensure_on_service(client, stored)
        vertices, faces, normals = client.mesh(shape_id, resolution=resolution, method=request.method).numpy()
        meshes.append((stored, shape_id, vertices, faces, normals))
    return meshes


def apply_re_extract(request: Extraction, meshes: list[ExtractedMesh]) -> str:
    """Replace the proxies' geometry inside their mesh datablocks, one per datablock (linked duplicates
    share it), for the objects still there (main thread); returns the panel's line."""
    replaced, done = 0, set()
    for (stored, _, vertices, faces, normals), resolution in zip(meshes, request.resolutions):
        obj = find_object(stored)
        if obj is None:
            continue
        if obj.data.name not in done and obj.data.library is None:
            replace_geometry(obj.data, vertices, faces, normals)
            done.add(obj.data.name)
        obj.neural_shapes.viewport_resolution = resolution
        replaced += 1
    remember_ids([(stored, shape_id) for stored, shape_id, *_ in meshes])
    method = request.method
    return f"re-extracted {replaced} object(s) at {', '.join(f'{r}^3' for r in sorted(set(request.resolutions)))} ({method})"


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
