"""Writing meshes to files, atomically (a temporary file, then a rename: no half-written output appears).

Wavefront OBJ, the default output of every command and what Blender imports, is written here with numpy:
writing it then neither imports trimesh (half a second of the ``mesh`` command's start-up) nor formats
numbers one by one in Python; the other formats go through trimesh's exporters.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.files import write_atomically

WRITABLE_MESH_SUFFIXES = (".obj", ".ply", ".stl", ".off", ".glb")


def obj_bytes(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None = None) -> bytes:
    """Wavefront OBJ text: vertices (v, 3), faces (f, 3) 0-based, optional unit vertex normals (v, 3).

    Coordinates are written with 8 decimals (trimesh's default), unit normals with 4 (as Blender's OBJ
    exporter writes them: finer than shading can show); faces refer to the
    normal of the same index (``f a//a b//b c//c``).
    """
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3) + 1  # OBJ counts from 1
    if len(vertices) == 0:
        return b""
    text = [_lines([b"v", *[item for axis in range(3) for item in (b" ", _decimal(vertices[:, axis], 8))]])]
    if normals is not None:
        normals = np.asarray(normals, dtype=np.float64).reshape(-1, 3)
        text.append(_lines([b"vn", *[item for axis in range(3) for item in (b" ", _decimal(normals[:, axis], 4))]]))
        corners = [_integer(faces[:, corner]) for corner in range(3)]
        text.append(_lines([b"f", *[item for corner in corners for item in (b" ", corner, b"//", corner)]]))
    else:
        text.append(_lines([b"f", *[item for corner in range(3) for item in (b" ", _integer(faces[:, corner]))]]))
    return b"".join(text)


# OBJ text is built with numpy: each field's characters as a (width, lines) byte matrix plus a mask of the
# characters kept, about 10x faster than Python's number formatting (most of `mesh` at 256^3 before).
# Fields run along the first axis so every digit position is one contiguous write.
Field = tuple[np.ndarray, np.ndarray]  # characters (width, n) uint8, keep (width, n) bool


def _integer(values: np.ndarray) -> Field:
    """Decimal digits of non-negative integers (n,), without leading zeros."""
    largest = int(values.max()) if len(values) else 0
    width = len(str(largest))
    remaining = np.asarray(values).astype(np.int32 if largest < 2**31 else np.int64)  # int32 division is faster
    digits = np.empty((width, len(values)), dtype=np.uint8)
    keep = np.empty((width, len(values)), dtype=bool)
    for position in range(width - 1, -1, -1):
        keep[position] = remaining > 0
        remaining, digits[position] = np.divmod(remaining, 10)
    keep[width - 1] = True  # zero is "0"
    # keep[p] above says "something is left at or above position p", which is what leading zeros lack.
    return digits + np.uint8(ord("0")), keep


def _decimal(values: np.ndarray, decimals: int) -> Field:
    """Fixed-point text of floats (n,) with ``decimals`` digits after the point (as ``%.{decimals}f``)."""
    if len(values) and not np.isfinite(values).all():
        raise ValueError("cannot write a mesh with NaN or infinite coordinates")
    scaled = np.rint(np.abs(values) * 10.0**decimals)
    if len(values) and scaled.max() >= 2.0**62:  # beyond int64: coordinates no mesh tool would take anyway
        raise ValueError(f"mesh coordinates too large to write: {np.abs(values).max():g}")
    whole, fraction = np.divmod(scaled.astype(np.int64), 10**decimals)
    negative = (values < 0) & ((whole > 0) | (fraction > 0))
    sign = (np.full((1, len(values)), ord("-"), dtype=np.uint8), negative[None])
    padded, _ = _integer(fraction + 10**decimals)  # a leading 1 keeps the zeros; the point replaces it
    padded[0] = ord(".")
    return _stack([sign, _integer(whole), (padded, np.ones(padded.shape, dtype=bool))])


def _stack(fields: list[Field]) -> Field:
    return np.concatenate([c for c, _ in fields]), np.concatenate([k for _, k in fields])


def _lines(parts: list[Field | bytes]) -> bytes:
    """Text with one line per row: the parts side by side (bytes: the same literal on every line), then a newline."""
    rows = next(part[0].shape[1] for part in parts if not isinstance(part, bytes))
    fields = []
    for part in [*parts, b"\n"]:
        if isinstance(part, bytes):
            chars = np.frombuffer(part, dtype=np.uint8)[:, None].repeat(rows, axis=1)
            part = (chars, np.ones(chars.shape, dtype=bool))
        fields.append(part)
    chars, keep = _stack(fields)
    return chars.T[keep.T].tobytes()


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
