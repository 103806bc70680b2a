"""Writing meshes to files, atomically (a temporary file, then a rename: no half-written output appears).

Wavefront OBJ, the default output of every command and what Blender imports, is written here with numpy
so writing it does not import trimesh (half a second of the ``mesh`` command's start-up); the other
formats go through trimesh's exporters.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.files import write_atomically

WRITABLE_MESH_SUFFIXES = (".obj", ".ply", ".stl", ".off", ".glb")


def obj_bytes(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None = None) -> bytes:
    """Wavefront OBJ text: vertices (v, 3), faces (f, 3) 0-based, optional vertex normals (v, 3)."""
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3) + 1  # OBJ counts from 1
    # One %-format over all numbers at once: C speed, where a Python loop per line costs seconds.
    parts = [("v %.8g %.8g %.8g\n" * len(vertices)) % tuple(vertices.ravel())]
    if normals is not None:
        normals = np.asarray(normals, dtype=np.float64).reshape(-1, 3)
        parts.append(("vn %.6g %.6g %.6g\n" * len(normals)) % tuple(normals.ravel()))
        parts.append(("f %d//%d %d//%d %d//%d\n" * len(faces)) % tuple(np.repeat(faces, 2, axis=1).ravel()))
    else:
        parts.append(("f %d %d %d\n" * len(faces)) % tuple(faces.ravel()))
    return "".join(parts).encode()


def write_mesh_file(path: Path, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None = None) -> None:
    """Write a triangle mesh in the format its suffix names (one of ``WRITABLE_MESH_SUFFIXES``).

    vertices (v, 3), faces (f, 3) 0-based, normals (v, 3) unit vertex normals or None; any frame.
    """
    suffix = path.suffix.lower()
    if suffix not in WRITABLE_MESH_SUFFIXES:
        raise ValueError(f"{path}: cannot write '{suffix}' meshes (use one of {', '.join(WRITABLE_MESH_SUFFIXES)})")
    if suffix == ".obj":
        data = obj_bytes(vertices, faces, normals)
    else:
        import trimesh

        mesh = trimesh.Trimesh(vertices, faces, vertex_normals=normals, process=False)
        exported = mesh.export(file_type=suffix[1:])
        data = exported.encode() if isinstance(exported, str) else exported
    write_atomically(path, data)
