"""The mesh objects to convert into neural objects through a service fit job, and where their neural
objects go.

The work is split so the UI never blocks: :func:`collect_meshes` reads the evaluated meshes (main
thread, fast), :func:`submit` uploads them and starts one batched job (HTTP only, a worker thread), and
:mod:`..background.tracked_jobs` follows the job and adds the neural objects, each placed with its
source object's world matrix (:func:`conversion_job`). ``blender -b`` scripts call
:func:`start_conversion` and :func:`..background.tracked_jobs.wait_for_job`.
"""

from __future__ import annotations

from dataclasses import dataclass

import bpy
from mathutils import Matrix

from ..background.tracked_jobs import TrackedJob
from ..client.client import Client
from ..client.models import Job
from ..errors import LocalError
from .mesh_data import evaluated_triangles
from .neural_objects import FetchedShape, take_materials


@dataclass(frozen=True)
class SourceMesh:
    """An object's evaluated mesh, ready to upload: vertices (v, 3) float32 local frame, faces (f, 3) int32."""

    name: str
    matrix_world: list[list[float]]
    vertices: object
    faces: object


def collect_meshes(objects: list[bpy.types.Object], depsgraph) -> list[SourceMesh]:
    """The evaluated, triangulated meshes of the mesh objects among ``objects`` (main thread: reads bpy data);
    :class:`.LocalError` when there is none or one has no faces."""
    meshes = []
    for obj in objects:
        if obj.type != "MESH":
            continue
        vertices, faces = evaluated_triangles(obj, depsgraph)
        if len(faces) == 0:
            raise LocalError(f"{obj.name}: the mesh has no faces")
        meshes.append(SourceMesh(obj.name, [list(row) for row in obj.matrix_world], vertices, faces))
    if not meshes:
        raise LocalError("select at least one mesh object to convert")
    return meshes


def submit(client: Client, meshes: list[SourceMesh], settings: dict | None = None, quality: str = "standard") -> str:
    """Upload the meshes and start one batched fit job (``quality``: the API's); returns its id (HTTP only:
    safe on a worker thread)."""
    uploads = [client.upload_mesh(m.vertices, m.faces, name=m.name).id for m in meshes]
    return client.start_fit(uploads, settings=settings, quality=quality).id


def conversion_job(meshes: list[SourceMesh], resolution: int) -> TrackedJob:
    """What the job's shapes become: neural objects (proxies at ``resolution``) with their sources' matrices
    and material slots."""
    matrices = {m.name: m.matrix_world for m in meshes}

    def place(job: Job, shapes: list[FetchedShape]) -> list[Matrix]:
        # rows (a plain nested list would be read as columns); a shape named after no source stays at the origin
        return [Matrix(matrices[shape.name]) if shape.name in matrices else Matrix.Identity(4) for shape in shapes]

    def dress(obj: bpy.types.Object, shape: FetchedShape) -> None:
        source = bpy.data.objects.get(shape.name)  # gone or renamed meanwhile: no materials to take
        if source is not None and source.type == "MESH":
            take_materials(obj, source)

    return TrackedJob(
        place=place,
        resolution=resolution,
        dress=dress,
        verb="converted",
        undo="Convert to Neural",
    )


def start_conversion(
    client: Client, objects: list[bpy.types.Object], depsgraph, resolution: int, settings: dict | None = None
) -> TrackedJob:
    """Collect, upload and start in one go (scripts and ``blender -b``); :class:`.LocalError` or
    :class:`.ServiceError` on failure."""
    meshes = collect_meshes(objects, depsgraph)
    tracked = conversion_job(meshes, resolution)
    tracked.job_id = submit(client, meshes, settings)
    return tracked
