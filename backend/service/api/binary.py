"""Binary answers: meshes and images as raw little-endian arrays, ``.npz`` or standard files.

Raw mesh (``application/octet-stream``): float32 vertices (v, 3), int32 faces (f, 3), float32 vertex
normals (v, 3), back to back; headers ``X-Vertex-Count`` and ``X-Face-Count`` give v and f.
Raw image: float32 linear RGBA (h, w, 4), top row first; headers ``X-Width`` and ``X-Height``.
"""

from __future__ import annotations

import io

import numpy as np
import trimesh
from fastapi import Response

from backend.rendering.renderer import write_png
from kernels.sphere_trace import TraceResult

MESH_FORMATS = ("raw", "npz", "obj", "ply", "stl", "glb")
_MESH_MEDIA = {"obj": "model/obj", "ply": "application/octet-stream", "stl": "model/stl", "glb": "model/gltf-binary"}
MESH_MEDIA_TYPES = ("application/octet-stream", *sorted(set(_MESH_MEDIA.values()) - {"application/octet-stream"}))


def mesh_response(mesh: trimesh.Trimesh, format: str, name: str) -> Response:
    vertices = np.ascontiguousarray(mesh.vertices, dtype="<f4")
    faces = np.ascontiguousarray(mesh.faces, dtype="<i4")
    normals = np.ascontiguousarray(mesh.vertex_normals if len(vertices) else np.zeros((0, 3)), dtype="<f4")
    counts = {"X-Vertex-Count": str(len(vertices)), "X-Face-Count": str(len(faces))}
    if format == "raw":
        return Response(
            vertices.tobytes() + faces.tobytes() + normals.tobytes(),
            media_type="application/octet-stream",
            headers=counts,
        )
    if format == "npz":
        buffer = io.BytesIO()
        np.savez(buffer, vertices=vertices, faces=faces, normals=normals)
        return Response(buffer.getvalue(), media_type="application/octet-stream", headers=counts)
    data = mesh.export(file_type=format)
    data = data.encode() if isinstance(data, str) else data
    return Response(
        data, media_type=_MESH_MEDIA[format], headers={**counts, "Content-Disposition": attachment(f"{name}.{format}")}
    )


def image_response(result: TraceResult, format: str) -> Response:
    height, width = result.depth.shape
    size = {"X-Width": str(width), "X-Height": str(height)}
    if format == "png":
        return Response(png_bytes(result.rgba), media_type="image/png", headers=size)
    if format == "rgba":
        return Response(
            np.ascontiguousarray(result.rgba, dtype="<f4").tobytes(),
            media_type="application/octet-stream",
            headers=size,
        )
    buffer = io.BytesIO()
    np.savez(
        buffer,
        rgba=result.rgba.astype("<f4"),
        depth=result.depth.astype("<f4"),
        normal=result.normal.astype("<f4"),
        object_id=result.object_id.astype("<i4"),
    )
    return Response(buffer.getvalue(), media_type="application/octet-stream", headers=size)


def png_bytes(rgba: np.ndarray) -> bytes:
    """The renderer's PNG encoding (sRGB, 8 bit), in memory."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "image.png"
        write_png(rgba, path)
        return path.read_bytes()


def attachment(filename: str) -> str:
    """A Content-Disposition value with a safe ASCII file name."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in filename)[:120] or "download"
    return f'attachment; filename="{safe}"'
