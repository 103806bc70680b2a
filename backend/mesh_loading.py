"""Loading meshes from files, checking them, and normalising them for fitting.

Every neural shape lives in a *normalised frame*: the source mesh is translated so the centre of its
bounding sphere sits at the origin and scaled so that sphere has radius 0.9, as in the paper's code
(so surface errors compare with the paper's). The similarity transform is kept, so every output can
go back to the mesh's own frame::

    x_normalised = scale * (x_source - centre)
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from backend.errors import NeuralShapesError
from backend.files import read_file_bytes

BOUNDING_RADIUS = 0.9
MESH_SUFFIXES = (".obj", ".ply", ".stl", ".off", ".glb", ".gltf")
DEFAULT_MAX_FACES = 2_000_000


@dataclass(frozen=True)
class Similarity:
    """Uniform scale and translation: x_normalised = scale * (x_source - centre)."""

    scale: float
    centre: np.ndarray  # (3,) float64, source frame

    def to_normalised(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, dtype=np.float64) - self.centre) * self.scale

    def to_source(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, dtype=np.float64) / self.scale + self.centre

    def matrix(self) -> np.ndarray:
        """(4, 4) float64 homogeneous matrix from the source frame to the normalised frame."""
        m = np.eye(4) * self.scale
        m[3, 3] = 1.0
        m[:3, 3] = -self.scale * self.centre
        return m


@dataclass(frozen=True)
class NormalisedMesh:
    """A checked triangle mesh in the normalised frame plus what is needed to go back.

    vertices : (v, 3) float64, normalised frame; faces : (f, 3) int64.
    """

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    transform: Similarity
    source_sha256: str
    clean: bool  # closed, consistently oriented, single body: pseudo-normal signs are exact

    def trimesh(self) -> trimesh.Trimesh:
        return trimesh.Trimesh(self.vertices, self.faces, process=False)


def find_mesh_files(paths: list[Path]) -> list[Path]:
    """Expand directories into the mesh files they hold (sorted); files are kept as given."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in MESH_SUFFIXES and p.is_file()))
        else:
            found.append(path)
    return found


def load_mesh_file(path: Path, max_faces: int = DEFAULT_MAX_FACES, transform: Similarity | None = None) -> NormalisedMesh:
    """Read a mesh file (OBJ, PLY, STL, OFF, GLB/glTF), check it and normalise it.

    ``transform``: use this similarity (e.g. a fitted shape's) instead of normalising the mesh afresh.

    Scenes with several meshes are merged in world space. Raises :class:`NeuralShapesError` with a
    one-line message naming the file and the cause for anything unusable.
    """
    path = Path(path)
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise NeuralShapesError(f"{path}: unknown mesh format '{path.suffix}' (expected one of {', '.join(MESH_SUFFIXES)})")
    data = read_file_bytes(path)
    try:
        loaded = _merge_scene(trimesh.load(path, process=False))
    except Exception as error:  # trimesh raises many types for corrupt files
        raise NeuralShapesError(f"{path}: cannot parse mesh ({type(error).__name__}: {error})".splitlines()[0]) from None
    return _checked_mesh(loaded, name=path.stem, label=str(path), source_sha256=hashlib.sha256(data).hexdigest(), max_faces=max_faces, transform=transform)


def load_mesh_bytes(data: bytes, file_type: str, *, name: str, label: str | None = None, max_faces: int = DEFAULT_MAX_FACES) -> NormalisedMesh:
    """A mesh file's content from memory (uploads), checked and normalised like :func:`load_mesh_file`.

    ``file_type``: obj, ply, stl, off or glb. Nothing outside ``data`` is read: external references
    (glTF side files, OBJ materials) are not resolved, which is why text glTF is not accepted here.
    """
    label = label or name
    if f".{file_type}" not in MESH_SUFFIXES or file_type == "gltf":
        raise NeuralShapesError(f"{label}: unknown mesh format '{file_type}' (expected obj, ply, stl, off or glb)")
    try:
        loaded = _merge_scene(trimesh.load(io.BytesIO(data), file_type=file_type, process=False))
    except Exception as error:  # trimesh raises many types for corrupt files
        raise NeuralShapesError(f"{label}: cannot parse mesh ({type(error).__name__}: {error})".splitlines()[0]) from None
    return _checked_mesh(loaded, name=name, label=label, source_sha256=hashlib.sha256(data).hexdigest(), max_faces=max_faces)


def _merge_scene(loaded):
    """A scene's triangle meshes merged in world space (a point cloud marker if it only has points)."""
    if isinstance(loaded, trimesh.Scene):
        # Other geometry than triangle meshes carries no surface.
        parts = [g.apply_transform(t) for g, t in _scene_meshes(loaded)]
        point_clouds = any(isinstance(g, trimesh.PointCloud) for g in loaded.geometry.values())
        loaded = trimesh.util.concatenate(parts) if parts else (trimesh.PointCloud(np.zeros((1, 3))) if point_clouds else None)
    return loaded


def _checked_mesh(loaded, *, name: str, label: str, source_sha256: str, max_faces: int, transform: Similarity | None = None) -> NormalisedMesh:
    if isinstance(loaded, trimesh.PointCloud) and len(loaded.vertices):
        raise NeuralShapesError(f"{label}: file holds a point cloud without faces; a surface with triangles is needed")
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise NeuralShapesError(f"{label}: mesh is empty (no triangle faces)")
    return normalise_mesh(
        loaded.vertices, loaded.faces, name=name, label=label, source_sha256=source_sha256, max_faces=max_faces, transform=transform
    )


def _scene_meshes(scene: trimesh.Scene) -> list[tuple[trimesh.Trimesh, np.ndarray]]:
    """(mesh copy, 4x4 world transform) for every triangle mesh instance in a scene graph."""
    found = []
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        geometry = scene.geometry[name]
        if isinstance(geometry, trimesh.Trimesh):
            found.append((geometry.copy(), transform))
    return found


def normalise_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    *,
    name: str,
    label: str | None = None,
    source_sha256: str | None = None,
    max_faces: int = DEFAULT_MAX_FACES,
    transform: Similarity | None = None,
) -> NormalisedMesh:
    """Check a triangle mesh given as arrays and move it to the normalised frame (or by ``transform``).

    vertices : (v, 3) float, source frame; faces : (f, 3) int. Degenerate faces are dropped; a mesh
    with nothing left, non-finite coordinates, bad indices or more than ``max_faces`` faces is refused.
    ``label`` names the mesh in error messages (default: ``name``).
    """
    label = label or name
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
        raise NeuralShapesError(f"{label}: mesh has no vertices")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise NeuralShapesError(f"{label}: mesh has no triangle faces")
    if len(faces) > max_faces:
        raise NeuralShapesError(f"{label}: mesh has {len(faces):,} faces, more than the limit of {max_faces:,} (raise it with --max-faces)")
    if not np.isfinite(vertices).all():
        bad = int((~np.isfinite(vertices)).any(axis=1).sum())
        raise NeuralShapesError(f"{label}: {bad} vertices have NaN or infinite coordinates")
    if not np.issubdtype(faces.dtype, np.integer) or faces.min() < 0 or faces.max() >= len(vertices):
        raise NeuralShapesError(f"{label}: face indices are not valid vertex indices")
    faces = faces.astype(np.int64)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    # Degenerate = zero area relative to the mesh size; such faces carry no surface.
    extent = float(np.ptp(vertices, axis=0).max())
    keep = mesh.area_faces > (1e-12 * extent * extent)
    if not keep.any():
        raise NeuralShapesError(f"{label}: all {len(faces)} faces are degenerate (zero area)")
    mesh = trimesh.Trimesh(vertices, faces[keep], process=True)  # also merges duplicate vertices
    if transform is None:
        transform = bounding_similarity(mesh.vertices, label)
    sha = source_sha256 or hashlib.sha256(vertices.tobytes() + faces.tobytes()).hexdigest()
    return NormalisedMesh(
        name=name,
        vertices=transform.to_normalised(mesh.vertices),
        faces=np.asarray(mesh.faces, dtype=np.int64),
        transform=transform,
        source_sha256=sha,
        clean=bool(mesh.is_watertight and mesh.is_winding_consistent and mesh.body_count == 1 and mesh.volume > 0),
    )


def bounding_similarity(vertices: np.ndarray, label: str) -> Similarity:
    """The normalising similarity of points (n, 3): their minimum bounding sphere -> radius 0.9 at the origin."""
    centre, radius = _bounding_sphere(vertices, label)
    return Similarity(scale=BOUNDING_RADIUS / radius, centre=centre)


def _bounding_sphere(vertices: np.ndarray, label: str) -> tuple[np.ndarray, float]:
    """A tight bounding sphere (centre (3,), radius) of the vertices; never a zero radius."""
    try:
        centre, radius = trimesh.nsphere.minimum_nsphere(vertices)
    except Exception:  # degenerate input for the exact solver (e.g. coplanar): fall back to the box
        centre = (vertices.min(axis=0) + vertices.max(axis=0)) / 2
        radius = float(np.linalg.norm(vertices - centre, axis=1).max())
    radius = float(np.linalg.norm(vertices - centre, axis=1).max())  # guard solver round-off
    if not radius > 0:
        raise NeuralShapesError(f"{label}: mesh has zero extent (all vertices coincide)")
    return np.asarray(centre, dtype=np.float64), radius
