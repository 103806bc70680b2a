"""Convert selected mesh objects into neural objects through a service fit job.

The work is split so the UI never blocks: :func:`start_conversion` uploads the evaluated meshes and
starts one batched job (seconds), :func:`poll_conversion` checks it once and, when it has finished,
builds the neural objects (a timer calls it in the UI; ``blender -b`` scripts call
:func:`wait_for_conversion`, as timers do not fire while a script blocks).

A neural object is a mesh object whose mesh is a marching-cubes proxy of the shape, placed with the
source object's world matrix, carrying the shape in custom properties: ``neural_shape_h5`` (the
``.h5`` bytes, so the shape survives save/reload/append and can be re-imported into any service),
``neural_shape_id``, ``neural_resolution`` and the fit metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import bpy
from mathutils import Matrix

from .client.client import Client, ServiceError
from .mesh_data import evaluated_triangles, mesh_from_arrays

POLL_SECONDS = 0.5


@dataclass
class Conversion:
    """One conversion: per source object its name and world matrix, then the job once it is submitted."""

    sources: list[tuple[str, list[list[float]]]]
    resolution: int
    job_id: str = ""
    state: str = "running"
    progress: float = 0.0
    stage: str = ""
    error: str = ""
    created: list[str] = field(default_factory=list)  # names of the neural objects made


@dataclass(frozen=True)
class SourceMesh:
    """An object's evaluated mesh, ready to upload: vertices (v, 3) float32 local frame, faces (f, 3) int32."""

    name: str
    matrix_world: list[list[float]]
    vertices: object
    faces: object


def collect_meshes(objects: list[bpy.types.Object], depsgraph) -> list[SourceMesh]:
    """The evaluated, triangulated meshes of the mesh objects among ``objects`` (main thread: reads bpy data)."""
    meshes = []
    for obj in objects:
        if obj.type != "MESH":
            continue
        vertices, faces = evaluated_triangles(obj, depsgraph)
        if len(faces) == 0:
            raise ServiceError(0, f"{obj.name}: the mesh has no faces")
        meshes.append(SourceMesh(obj.name, [list(row) for row in obj.matrix_world], vertices, faces))
    if not meshes:
        raise ServiceError(0, "select at least one mesh object to convert")
    return meshes


def submit(client: Client, meshes: list[SourceMesh], settings: dict | None = None) -> str:
    """Upload the meshes and start one batched fit job; returns its id (HTTP only: safe on a worker thread)."""
    uploads = [client.upload_mesh(m.vertices, m.faces, name=m.name).id for m in meshes]
    return client.start_fit(uploads, settings=settings).id


def start_conversion(client: Client, objects: list[bpy.types.Object], depsgraph, resolution: int, settings: dict | None = None) -> Conversion:
    """Collect, upload and start in one go (scripts and ``blender -b``); :class:`ServiceError` on failure."""
    meshes = collect_meshes(objects, depsgraph)
    return Conversion(sources=[(m.name, m.matrix_world) for m in meshes], resolution=resolution, job_id=submit(client, meshes, settings))


def poll_conversion(client: Client, conversion: Conversion, collection: bpy.types.Collection) -> bool:
    """Check the job once; when it succeeded, create the neural objects. Returns True when finished."""
    job = client.job(conversion.job_id)
    conversion.progress, conversion.stage = job.progress, job.stage
    if not job.done:
        return False
    if job.state != "succeeded":
        conversion.state, conversion.error = job.state, job.error or job.state
        return True
    for shape_id in job.outputs.get("shapes", []):
        shape = client.shape(shape_id)
        matrix = dict(conversion.sources).get(shape.name)
        obj = create_neural_object(client, shape_id, shape.name, conversion.resolution, collection, shape.metrics)
        if matrix is not None:
            obj.matrix_world = Matrix(matrix)  # rows (a plain nested list would be read as columns)
        conversion.created.append(obj.name)
    conversion.state = "succeeded"
    return True


def wait_for_conversion(client: Client, conversion: Conversion, collection: bpy.types.Collection, timeout: float = 3600.0) -> Conversion:
    """Poll until done (for scripts and ``blender -b``, where timers do not fire)."""
    deadline = time.monotonic() + timeout
    while not poll_conversion(client, conversion, collection):
        if time.monotonic() > deadline:
            raise ServiceError(0, f"job {conversion.job_id} did not finish within {timeout:.0f} s")
        time.sleep(POLL_SECONDS)
    return conversion


def create_neural_object(client: Client, shape_id: str, name: str, resolution: int, collection: bpy.types.Collection, metrics: dict) -> bpy.types.Object:
    """A mesh object holding the shape's ``.h5`` bytes and a proxy mesh extracted at ``resolution``."""
    arrays = client.mesh(shape_id, resolution=resolution)
    obj = bpy.data.objects.new(f"{name} (neural)", mesh_from_arrays(f"{name} (neural)", *arrays.numpy()[:2]))
    obj["neural_shape_h5"] = client.download_shape(shape_id)
    obj["neural_shape_id"] = shape_id
    obj["neural_resolution"] = resolution
    for key, value in metrics.items():
        if value is not None:
            obj[f"neural_{key}"] = float(value)
    collection.objects.link(obj)
    return obj
