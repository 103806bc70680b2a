"""Blender meshes <-> numpy arrays, with ``foreach_get`` / ``foreach_set`` into preallocated arrays."""

from __future__ import annotations

import bpy
import numpy as np


def evaluated_triangles(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph) -> tuple[np.ndarray, np.ndarray]:
    """The object's mesh with modifiers applied, triangulated: vertices (v, 3) float32 in the object's
    local frame, faces (f, 3) int32."""
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        mesh.calc_loop_triangles()
        vertices = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", vertices)
        faces = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int32)
        mesh.loop_triangles.foreach_get("vertices", faces)
    finally:
        evaluated.to_mesh_clear()
    return vertices.reshape(-1, 3), faces.reshape(-1, 3)


def mesh_from_arrays(name: str, vertices: np.ndarray, faces: np.ndarray) -> bpy.types.Mesh:
    """A new mesh datablock from vertices (v, 3) and triangles (f, 3)."""
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", np.ascontiguousarray(vertices, dtype=np.float32).ravel())
    mesh.loops.add(len(faces) * 3)
    mesh.loops.foreach_set("vertex_index", np.ascontiguousarray(faces, dtype=np.int32).ravel())
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, len(faces) * 3, 3, dtype=np.int32))
    mesh.polygons.foreach_set("loop_total", np.full(len(faces), 3, dtype=np.int32))
    mesh.update()
    mesh.validate()
    return mesh
