"""Blender meshes <-> numpy arrays, with ``foreach_get`` / ``foreach_set`` into preallocated arrays.

Re-extraction replaces a mesh's geometry *inside* its datablock (:func:`replace_geometry`): everything
that refers to the datablock (objects sharing it as linked duplicates, modifiers, material slots) stays,
and the user's attributes are carried to the new vertices and faces from the nearest old ones.
"""

from __future__ import annotations

import bpy
import numpy as np
from mathutils.kdtree import KDTree

# Blender's own attributes (geometry, selection, UVs' internals, shading): made anew with the geometry.
_BUILT_IN = {"position", "sharp_face", "material_index", "sharp_edge", "shade_smooth"}
_DOMAINS = {"POINT", "FACE"}  # where a nearest-element transfer means something on a new surface
_VALUE_FIELDS = {
    "FLOAT": ("value", 1),
    "INT": ("value", 1),
    "BOOLEAN": ("value", 1),
    "INT8": ("value", 1),
    "FLOAT_VECTOR": ("vector", 3),
    "FLOAT_COLOR": ("color", 4),
    "BYTE_COLOR": ("color", 4),
    "FLOAT2": ("vector", 2),
}
_DTYPES = {"INT": np.int32, "BOOLEAN": bool, "INT8": np.int32}


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


def mesh_from_arrays(
    name: str, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None = None
) -> bpy.types.Mesh:
    """A new mesh datablock from vertices (v, 3) and triangles (f, 3), shaded smooth with the vertex
    ``normals`` (v, 3) when given (the extraction's: the SDF's gradient, finer than face averages)."""
    mesh = bpy.data.meshes.new(name)
    _fill(mesh, vertices, faces, normals, smooth=normals is not None)
    return mesh


def replace_geometry(mesh: bpy.types.Mesh, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None) -> None:
    """Swap ``mesh``'s geometry for vertices (v, 3) and triangles (f, 3) in place.

    Kept: the datablock (its users, linked duplicates, modifiers), material slots, smooth or flat
    shading as it was, and the user's point and face attributes, each new element taking the value of the
    nearest old one (other domains' attributes are kept, reset to zero). Faces all use the first material.
    """
    smooth = _is_smooth(mesh)
    carried = _attribute_snapshot(mesh)
    mesh.clear_geometry()
    _fill(mesh, vertices, faces, normals if smooth else None, smooth=smooth)
    _restore_attributes(mesh, carried)


def mesh_arrays(mesh: bpy.types.Mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A triangle mesh's vertices (v, 3), faces (f, 3) and custom vertex normals (v, 3) or None: what
    :func:`replace_geometry` takes, to put a mesh back as it was."""
    vertices = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", vertices)
    mesh.calc_loop_triangles()
    faces = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int32)
    mesh.loop_triangles.foreach_get("vertices", faces)
    normals = _corner_normals_per_vertex(mesh) if _is_smooth(mesh) and len(mesh.vertices) else None
    return vertices.reshape(-1, 3), faces.reshape(-1, 3), normals


def _corner_normals_per_vertex(mesh: bpy.types.Mesh) -> np.ndarray:
    """The shading normal of each vertex (v, 3): its corners' (custom) normals, which
    :func:`_fill` set equal per vertex."""
    if hasattr(mesh, "corner_normals"):  # Blender 4.1 and later
        corners = np.empty(len(mesh.corner_normals) * 3, dtype=np.float32)
        mesh.corner_normals.foreach_get("vector", corners)
    else:
        mesh.calc_normals_split()
        corners = np.empty(len(mesh.loops) * 3, dtype=np.float32)
        mesh.loops.foreach_get("normal", corners)
    owners = np.empty(len(mesh.loops), dtype=np.int32)
    mesh.loops.foreach_get("vertex_index", owners)
    normals = np.zeros((len(mesh.vertices), 3), dtype=np.float32)
    normals[owners] = corners.reshape(-1, 3)
    return normals


def _fill(mesh: bpy.types.Mesh, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None, smooth: bool):
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", np.ascontiguousarray(vertices, dtype=np.float32).ravel())
    mesh.loops.add(len(faces) * 3)
    mesh.loops.foreach_set("vertex_index", np.ascontiguousarray(faces, dtype=np.int32).ravel())
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, len(faces) * 3, 3, dtype=np.int32))
    mesh.polygons.foreach_set("loop_total", np.full(len(faces), 3, dtype=np.int32))
    mesh.polygons.foreach_set("use_smooth", np.full(len(faces), smooth, dtype=bool))
    mesh.update()
    mesh.validate()
    if normals is not None and len(normals) == len(mesh.vertices):
        if hasattr(mesh, "use_auto_smooth"):  # before Blender 4.1 custom normals need auto smooth on
            mesh.use_auto_smooth = True
        mesh.normals_split_custom_set_from_vertices(np.ascontiguousarray(normals, dtype=np.float32).reshape(-1, 3))


def _is_smooth(mesh: bpy.types.Mesh) -> bool:
    """Shaded smooth: no faces yet (a new proxy), or any face smooth."""
    if not len(mesh.polygons):
        return True
    flags = np.empty(len(mesh.polygons), dtype=bool)
    mesh.polygons.foreach_get("use_smooth", flags)
    return bool(flags.any())


def _element_positions(mesh: bpy.types.Mesh, domain: str) -> np.ndarray:
    if domain == "POINT":
        positions = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", positions)
    else:
        positions = np.empty(len(mesh.polygons) * 3, dtype=np.float32)
        mesh.polygons.foreach_get("center", positions)
    return positions.reshape(-1, 3)


def _attribute_snapshot(mesh: bpy.types.Mesh) -> list[tuple[str, str, str, np.ndarray | None, np.ndarray | None]]:
    """(name, type, domain, values, element positions) of the user's attributes."""
    kept = []
    for attribute in mesh.attributes:
        name, kind, domain = attribute.name, attribute.data_type, attribute.domain
        if name.startswith(".") or name in _BUILT_IN or kind not in _VALUE_FIELDS:
            continue
        if name in {uv.name for uv in getattr(mesh, "uv_layers", [])}:
            continue  # UV maps belong to the old faces' corners: no meaning on new ones
        values = positions = None
        if domain in _DOMAINS and len(attribute.data):
            field, width = _VALUE_FIELDS[kind]
            values = np.empty(len(attribute.data) * width, dtype=_DTYPES.get(kind, np.float32))
            attribute.data.foreach_get(field, values)
            values = values.reshape(len(attribute.data), width)
            positions = _element_positions(mesh, domain)
        kept.append((name, kind, domain, values, positions))
    return kept


def _restore_attributes(mesh: bpy.types.Mesh, kept) -> None:
    nearest: dict[str, np.ndarray] = {}  # per domain: the old element nearest each new one (shared by attributes)
    for name, kind, domain, values, positions in kept:
        attribute = mesh.attributes.get(name) or mesh.attributes.new(name, kind, domain)
        if values is None or not len(attribute.data):
            continue
        if domain not in nearest:
            nearest[domain] = _nearest_old(positions, _element_positions(mesh, domain))
        field, _ = _VALUE_FIELDS[kind]
        attribute.data.foreach_set(field, np.ascontiguousarray(values[nearest[domain]]).ravel())


def _nearest_old(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """For each of the new positions (n, 3), the index of the nearest old one (m, 3)."""
    tree = KDTree(len(old))
    for index, position in enumerate(old):
        tree.insert(position, index)
    tree.balance()
    return np.fromiter((tree.find(p)[1] for p in new), dtype=np.int64, count=len(new))
