"""Loading point clouds (scans) for fitting from surface points alone (:mod:`backend.fitting.from_points`).

Formats: PLY (vertices, optional ``nx ny nz`` normals), XYZ / TXT (3 or 6 numbers per line: position
and optional normal), and any mesh file trimesh reads (its vertices). Points are moved to the same
normalised frame as meshes: the minimum bounding sphere of the points becomes radius 0.9.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from backend.errors import NeuralShapesError
from backend.files import read_file_bytes
from backend.meshes.loading import bounding_similarity, one_line, read_trimesh_file
from backend.shapes.frame import Similarity

POINT_SUFFIXES = (".ply", ".xyz", ".txt", ".obj", ".off", ".stl", ".glb", ".gltf")
MAX_POINTS = 10_000_000


@dataclass(frozen=True)
class PointCloud:
    """points (n, 3) float32 and optional outward normals (n, 3), normalised frame."""

    name: str
    points: np.ndarray
    normals: np.ndarray | None
    transform: Similarity
    source_sha256: str


def load_point_cloud(path: Path) -> PointCloud:
    """Read a point cloud file; one-line :class:`NeuralShapesError` naming the file for anything unusable."""
    path = Path(path)
    if path.suffix.lower() not in POINT_SUFFIXES:
        raise NeuralShapesError(f"{path}: unknown point cloud format '{path.suffix}' (use {', '.join(POINT_SUFFIXES)})")
    data = read_file_bytes(path)
    try:
        points, normals = _parse(path, data)
    except NeuralShapesError:
        raise
    except Exception as error:  # parsers raise many kinds of errors on malformed files
        raise NeuralShapesError(
            one_line(f"{path}: cannot parse point cloud ({type(error).__name__}: {error})")
        ) from None
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise NeuralShapesError(f"{path}: no points")
    if len(points) > MAX_POINTS:
        raise NeuralShapesError(f"{path}: {len(points):,} points, more than the limit of {MAX_POINTS:,}")
    if not np.isfinite(points).all():
        raise NeuralShapesError(
            f"{path}: {int((~np.isfinite(points)).any(axis=1).sum())} points have NaN or infinite coordinates"
        )
    if normals is not None:
        length = np.linalg.norm(normals, axis=1)
        normals = (
            normals / length[:, None] if np.isfinite(normals).all() and (length > 0).all() else None
        )  # unusable: ignore
    transform = bounding_similarity(points, str(path))
    return PointCloud(
        path.stem,
        transform.to_normalised(points).astype(np.float32),
        None if normals is None else normals.astype(np.float32),
        transform,
        hashlib.sha256(data).hexdigest(),
    )


def _parse(path: Path, data: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    if path.suffix.lower() in (".xyz", ".txt"):
        lines = [
            line
            for line in data.decode("utf-8", "replace").splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
        if not lines:
            raise NeuralShapesError(f"{path}: no points")
        table = np.loadtxt(lines, dtype=np.float64, ndmin=2)
        if table.shape[1] not in (3, 6):
            raise NeuralShapesError(f"{path}: expected 3 or 6 numbers per line, found {table.shape[1]}")
        return table[:, :3], (table[:, 3:] if table.shape[1] == 6 else None)
    # The same guarded parse as meshes: glTF sized before it is read, side files only from its folder.
    loaded = read_trimesh_file(path, data, max_faces=MAX_POINTS, max_vertices=MAX_POINTS)
    if isinstance(loaded, trimesh.Scene):
        loaded = loaded.to_geometry()
    points = np.asarray(loaded.vertices, dtype=np.float64)
    raw = loaded.metadata.get("_ply_raw", {}).get("vertex", {}).get("data", {}) if path.suffix.lower() == ".ply" else {}
    normals = (
        np.stack([np.asarray(raw[k], dtype=np.float64) for k in ("nx", "ny", "nz")], axis=1)
        if all(k in raw for k in ("nx", "ny", "nz"))
        else None
    )
    return points, normals
