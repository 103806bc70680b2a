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
import json
import struct
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph
import trimesh

from backend.errors import NeuralShapesError
from backend.files import read_file_bytes
from backend.shapes.frame import BOUNDING_RADIUS, Similarity

READABLE_MESH_SUFFIXES = (".obj", ".ply", ".stl", ".off", ".glb", ".gltf")
DEFAULT_MAX_FACES = 2_000_000
MAX_SCENE_PARTS = 50_000  # glTF nodes + primitives: trimesh builds Python objects per part (~20 us each)


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
            found.extend(
                sorted(p for p in path.iterdir() if p.suffix.lower() in READABLE_MESH_SUFFIXES and p.is_file())
            )
        else:
            found.append(path)
    return found


def load_mesh_file(
    path: Path, max_faces: int = DEFAULT_MAX_FACES, transform: Similarity | None = None
) -> NormalisedMesh:
    """Read a mesh file (OBJ, PLY, STL, OFF, GLB/glTF), check it and normalise it.

    ``transform``: use this similarity (e.g. a fitted shape's) instead of normalising the mesh afresh.

    Scenes with several meshes are merged in world space. glTF side files (buffers) are read only from
    the file's own folder. Raises :class:`NeuralShapesError` with a one-line message naming the file
    and the cause for anything unusable.
    """
    path = Path(path)
    if path.suffix.lower() not in READABLE_MESH_SUFFIXES:
        raise NeuralShapesError(
            f"{path}: unknown mesh format '{path.suffix}' (expected one of {', '.join(READABLE_MESH_SUFFIXES)})"
        )
    data = read_file_bytes(path)
    loaded = read_trimesh_file(path, data, max_faces, vertex_limit(max_faces))
    vertices, faces = _triangles(loaded, str(path))
    return normalise_mesh(
        vertices,
        faces,
        name=path.stem,
        label=str(path),
        source_sha256=hashlib.sha256(data).hexdigest(),
        max_faces=max_faces,
        transform=transform,
    )


def load_mesh_bytes(
    data: bytes, file_type: str, *, name: str, label: str | None = None, max_faces: int = DEFAULT_MAX_FACES
) -> NormalisedMesh:
    """A mesh file's content from memory (uploads), checked and normalised like :func:`load_mesh_file`.

    ``file_type``: obj, ply, stl, off or glb. Nothing outside ``data`` is read: external references
    (glTF side files, OBJ materials) are not resolved, which is why text glTF is not accepted here.
    """
    label = label or name
    if f".{file_type}" not in READABLE_MESH_SUFFIXES or file_type == "gltf":
        raise NeuralShapesError(f"{label}: unknown mesh format '{file_type}' (expected obj, ply, stl, off or glb)")
    loaded = read_trimesh(
        data, file_type, label=label, folder=None, max_faces=max_faces, max_vertices=vertex_limit(max_faces)
    )
    vertices, faces = _triangles(loaded, label)
    return normalise_mesh(
        vertices, faces, name=name, label=label, source_sha256=hashlib.sha256(data).hexdigest(), max_faces=max_faces
    )


def vertex_limit(max_faces: int) -> int:
    """The vertex limit that goes with a face limit: a triangle soup (STL, unindexed glTF) has three
    vertices per face, so more than that means vertices no face uses (bloat, or a file built to exhaust memory)."""
    return 3 * max_faces


def read_trimesh_file(path: Path, data: bytes, max_faces: int, max_vertices: int):
    """:func:`read_trimesh` of ``data``, the bytes of the file at ``path``: named by it, its type from its
    suffix, glTF side files read only from its folder."""
    return read_trimesh(
        data,
        path.suffix[1:].lower(),
        label=str(path),
        folder=path.parent,
        max_faces=max_faces,
        max_vertices=max_vertices,
    )


def read_trimesh(data: bytes, file_type: str, *, label: str, folder: Path | None, max_faces: int, max_vertices: int):
    """trimesh's parse of a mesh file's bytes (a Trimesh, PointCloud or Scene), or a one-line NeuralShapesError.

    glTF/GLB scenes are sized from their JSON first (every mesh times its instances in the node graph,
    every accessor), so nothing over ``max_faces`` / ``max_vertices`` is allocated. ``folder``: where
    glTF side files may be read from (never outside it); None reads no side files at all.
    Materials and textures are never read: fitting needs only the surface.
    """
    try:
        if file_type in ("glb", "gltf"):
            _check_gltf_size(_gltf_json(data, file_type), label=label, max_faces=max_faces, max_vertices=max_vertices)
        return trimesh.load(
            io.BytesIO(data),
            file_type=file_type,
            process=False,
            skip_materials=True,
            resolver=_FolderResolver(folder, label),
        )
    except NeuralShapesError:
        raise
    except Exception as error:  # noqa: BLE001 (trimesh raises many types for corrupt files)
        raise NeuralShapesError(one_line(f"{label}: cannot parse mesh ({type(error).__name__}: {error})")) from None


def one_line(message: str) -> str:
    """The first line of a message, for errors that quote a parser's own (possibly multi-line) text."""
    lines = message.splitlines()
    return lines[0] if lines else message


def _triangles(loaded, label: str) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (v, 3) and faces (f, 3) of a parsed file; a scene's triangle meshes merged in world space."""
    if isinstance(loaded, trimesh.Scene):
        # Other geometry than triangle meshes carries no surface. Every instance is transformed as
        # arrays (no per-instance Trimesh copies); the size was checked before the scene was built.
        vertices, faces, offset = [], [], 0
        for node in loaded.graph.nodes_geometry:
            matrix, name = loaded.graph[node]
            geometry = loaded.geometry[name]
            if isinstance(geometry, trimesh.Trimesh) and len(geometry.faces):
                # Malformed files reach the graph as they are: node matrices and vertices of other sizes.
                matrix, points = np.asarray(matrix, dtype=np.float64), np.asarray(geometry.vertices, dtype=np.float64)
                if matrix.shape != (4, 4) or points.ndim != 2 or points.shape[1] != 3:
                    raise NeuralShapesError(
                        f"{label}: scene node {str(node)[:40]!r} has a {matrix.shape} transform and "
                        f"{points.shape} vertices, not 4x4 and (n, 3)"
                    )
                vertices.append(points @ matrix[:3, :3].T + matrix[:3, 3])
                faces.append(np.asarray(geometry.faces, dtype=np.int64) + offset)
                offset += len(geometry.vertices)
        if faces:
            return np.concatenate(vertices), np.concatenate(faces)
        loaded = next((g for g in loaded.geometry.values() if isinstance(g, trimesh.PointCloud)), None)
    if isinstance(loaded, trimesh.PointCloud) and len(loaded.vertices):
        raise NeuralShapesError(f"{label}: file holds a point cloud without faces; a surface with triangles is needed")
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise NeuralShapesError(f"{label}: mesh is empty (no triangle faces)")
    return loaded.vertices, loaded.faces


# --- glTF: sizes from the JSON, side files from the file's folder only ----------------------------

_GLB_MAGIC, _GLB_JSON = 0x46546C67, 0x4E4F534A
_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_TRIANGLES, _TRIANGLE_STRIP = 4, 5  # the primitive modes trimesh turns into faces


def _gltf_json(data: bytes, file_type: str) -> dict:
    """The JSON document of a .gltf file or of a .glb's first chunk (ValueError, as trimesh's own parse
    errors, for anything malformed: :func:`read_trimesh` reports both the same way)."""
    if file_type == "glb":
        if len(data) < 20:
            raise ValueError("not a GLB file (shorter than its 20-byte header)")
        magic, version, _, length, kind = struct.unpack_from("<5I", data)
        if magic != _GLB_MAGIC:
            raise ValueError("not a GLB file (no 'glTF' magic)")
        if version != 2:
            raise ValueError(f"GLB version {version} is not supported (only glTF 2)")
        if kind != _GLB_JSON or length > len(data) - 20:
            raise ValueError("GLB file has no complete JSON chunk first")
        data = data[20 : 20 + length]
    document = json.loads(data)
    if not isinstance(document, dict):
        raise ValueError("glTF JSON is not an object")
    return document


def _check_gltf_size(document: dict, *, label: str, max_faces: int, max_vertices: int) -> None:
    """Refuse a glTF scene whose meshes times their instances exceed the limits, before trimesh reads it.

    Counts come from the accessors' declared ``count`` (trimesh allocates by them, even without data);
    instances are the nodes of the default scene that use a mesh. A node reached twice (a cycle or a
    node with two parents) is refused: glTF requires the node hierarchy to be a forest.
    """
    accessors, meshes, nodes = (_list(document, key) for key in ("accessors", "meshes", "nodes"))
    counts = []
    for index, accessor in enumerate(accessors):
        count = _natural(_dict(accessor).get("count"), f"accessor {index}'s count")
        if count * _COMPONENTS.get(accessor.get("type"), 16) > 3 * max_vertices:
            raise NeuralShapesError(
                f"{label}: accessor {index} declares {count:,} items, more than the limit of {max_vertices:,} vertices allows"
            )
        counts.append(count)
    mesh_sizes, primitives = [], 0
    for mesh in meshes:
        faces = vertices = 0
        for primitive in _list(_dict(mesh), "primitives"):
            primitives += 1
            primitive = _dict(primitive)
            position = _dict(primitive.get("attributes", {})).get("POSITION")
            points = counts[position] if isinstance(position, int) and 0 <= position < len(counts) else 0
            indices = primitive.get("indices")
            corners = counts[indices] if isinstance(indices, int) and 0 <= indices < len(counts) else points
            mode = primitive.get("mode", _TRIANGLES)
            vertices += points
            faces += corners // 3 if mode == _TRIANGLES else max(corners - 2, 0) if mode == _TRIANGLE_STRIP else 0
        mesh_sizes.append((faces, vertices))
    instances = [0] * len(meshes)
    for node in _scene_nodes(document, nodes, label):
        mesh = node.get("mesh")
        if isinstance(mesh, int) and 0 <= mesh < len(meshes):
            instances[mesh] += 1
    # Every mesh's arrays are built once even when no node uses it.
    faces = sum(f * max(n, 1) for (f, _), n in zip(mesh_sizes, instances))
    vertices = sum(v * max(n, 1) for (_, v), n in zip(mesh_sizes, instances))
    used = sum(instances)
    if faces > max_faces:
        raise NeuralShapesError(
            f"{label}: scene has {faces:,} faces in {used:,} mesh instances, more than the limit of {max_faces:,} (raise it with --max-faces)"
        )
    if vertices > max_vertices:
        raise NeuralShapesError(
            f"{label}: scene has {vertices:,} vertices in {used:,} mesh instances, more than the limit of {max_vertices:,} (3 per allowed face)"
        )
    if len(nodes) + primitives > MAX_SCENE_PARTS:
        raise NeuralShapesError(
            f"{label}: scene has {len(nodes):,} nodes and {primitives:,} primitives, more than the limit of {MAX_SCENE_PARTS:,} parts"
        )


def _scene_nodes(document: dict, nodes: list, label: str) -> list[dict]:
    """The nodes of the scene trimesh shows (``scene``, else the first), each once."""
    scenes = _list(document, "scenes")
    if not scenes:
        return []
    chosen = document.get("scene", 0)
    if not isinstance(chosen, int) or not 0 <= chosen < len(scenes):
        raise NeuralShapesError(f"{label}: glTF 'scene' {chosen!r} is not one of its {len(scenes)} scenes")
    pending = list(_list(_dict(scenes[chosen]), "nodes"))
    seen: set[int] = set()
    found = []
    while pending:
        index = pending.pop()
        if not isinstance(index, int) or not 0 <= index < len(nodes):
            raise NeuralShapesError(f"{label}: glTF scene refers to node {index!r}, which does not exist")
        if index in seen:
            raise NeuralShapesError(f"{label}: glTF node {index} is reached twice (the node graph must be a forest)")
        seen.add(index)
        node = _dict(nodes[index])
        found.append(node)
        pending.extend(_list(node, "children"))
    return found


def _list(parent: dict, key: str) -> list:
    value = parent.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"glTF '{key}' is not a list")
    return value


def _dict(value) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"glTF entry {str(value)[:40]!r} is not an object")
    return value


def _natural(value, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"glTF {what} is not a non-negative integer")
    return value


class _FolderResolver(trimesh.resolvers.Resolver):
    """Side files (glTF buffers) read from one folder only: no absolute paths, no ``..``, no URLs,
    no symlinks that lead out of it. ``folder`` None: no side files at all (uploads)."""

    def __init__(self, folder: Path | None, label: str):
        self.folder = None if folder is None else Path(folder).resolve()
        self.label = label

    def get(self, name: str) -> bytes:
        path = self._inside(name)
        if not path.is_file():
            raise NeuralShapesError(f"{self.label}: its side file '{name[:80]}' does not exist")
        return path.read_bytes()

    def _inside(self, name: str) -> Path:
        """The path ``name`` (a relative, %-encoded URI) refers to, checked to lie inside the folder."""
        if self.folder is None:
            raise NeuralShapesError(
                f"{self.label}: refers to the side file '{name[:80]}', which is not read here (embed buffers in a .glb)"
            )
        relative = urllib.parse.unquote(str(name))
        if urllib.parse.urlsplit(relative).scheme or Path(relative).is_absolute() or "\0" in relative:
            raise NeuralShapesError(
                f"{self.label}: refers to '{name[:80]}', not a file beside it; only files in its own folder are read"
            )
        path = (self.folder / relative).resolve()  # follows symlinks: one leading out is caught below
        if not path.is_relative_to(self.folder):
            raise NeuralShapesError(
                f"{self.label}: refers to '{name[:80]}', outside its own folder; only files in its folder are read"
            )
        return path

    def write(self, name: str, data) -> None:
        raise NeuralShapesError(f"{self.label}: loading never writes side files")

    def namespaced(self, namespace: str) -> _FolderResolver:
        return _FolderResolver(None if self.folder is None else self._inside(namespace), self.label)

    def keys(self):
        return iter(())


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
    with nothing left, non-finite coordinates, bad indices, more than ``max_faces`` faces or more than
    :func:`vertex_limit` vertices is refused.
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
        raise NeuralShapesError(
            f"{label}: mesh has {len(faces):,} faces, more than the limit of {max_faces:,} (raise it with --max-faces)"
        )
    if len(vertices) > vertex_limit(max_faces):
        raise NeuralShapesError(
            f"{label}: mesh has {len(vertices):,} vertices, more than the limit of {vertex_limit(max_faces):,} (3 per allowed face)"
        )
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
    mesh = oriented_outward(mesh)
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


def oriented_outward(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """The mesh with every connected piece's faces wound alike and pointing out.

    Pseudo normals and winding numbers both follow face orientation: a mesh whose faces disagree on which
    side is out fits as a shell full of holes, one wound inward fits inside out. Faces are made to agree
    along shared edges (closed and open pieces alike; a breadth-first walk over the face adjacency, in
    scipy, since trimesh's own repair walks face by face in Python: 18 s for 330 K faces), then each
    piece is turned so that its signed volume about its own centre (the divergence theorem over its faces;
    meaningful for closed pieces and for open ones with holes) is positive.
    """
    faces = np.asarray(mesh.faces)
    pairs = mesh.face_adjacency  # faces meeting at an edge of exactly two faces
    graph = scipy.sparse.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(faces),) * 2)
    _, piece = scipy.sparse.csgraph.connected_components(graph, directed=False)
    if not mesh.is_winding_consistent:
        faces = np.where(_disagreeing(faces, pairs, mesh.face_adjacency_edges, piece)[:, None], faces[:, ::-1], faces)
    corners = np.asarray(mesh.vertices)[faces]
    count = np.bincount(piece)
    centre = np.stack([np.bincount(piece, weights=corners[:, :, axis].mean(axis=1)) for axis in range(3)], 1)
    corners = corners - (centre / count[:, None])[piece][:, None, :]
    signed = np.einsum("ij,ij->i", corners[:, 0], np.cross(corners[:, 1], corners[:, 2]))
    inward = np.bincount(piece, weights=signed) < 0
    if mesh.is_winding_consistent and not inward.any():
        return mesh
    faces = np.where(inward[piece][:, None], faces[:, ::-1], faces)
    return trimesh.Trimesh(mesh.vertices, faces, process=False)


def _disagreeing(faces: np.ndarray, pairs: np.ndarray, shared: np.ndarray, piece: np.ndarray) -> np.ndarray:
    """Per face, whether it must turn over to agree with the first face of its piece (a breadth-first walk)."""
    # Two faces agree when they run along their shared edge (u, v) in opposite directions.
    runs = [_runs_along(faces[pairs[:, side]], shared) for side in (0, 1)]
    disagree = np.concatenate([runs[0] == runs[1]] * 2)
    size = np.int64(len(faces))
    key = np.concatenate([pairs[:, 0] * size + pairs[:, 1], pairs[:, 1] * size + pairs[:, 0]])
    by_key = np.argsort(key)
    key, disagree = key[by_key], disagree[by_key]
    # One walk over every piece: an extra node (index ``size``) joins each piece's first face, so the walk
    # costs one pass over the faces however many pieces there are.
    roots = np.unique(piece, return_index=True)[1]
    rows, cols = np.concatenate([pairs[:, 0], np.full(len(roots), size)]), np.concatenate([pairs[:, 1], roots])
    graph = scipy.sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(size + 1, size + 1))
    order, parent = scipy.sparse.csgraph.breadth_first_order(graph, size, directed=False)
    children = order[1:]
    parents = parent[children].astype(np.int64)
    differs = np.zeros(len(children), dtype=bool)  # a piece's first face keeps its orientation
    inner = parents != size
    differs[inner] = disagree[np.searchsorted(key, parents[inner] * size + children[inner])]
    flip = np.zeros(size + 1, dtype=bool)
    for child, parent_face, turn in zip(children.tolist(), parents.tolist(), differs.tolist()):
        flip[child] = flip[parent_face] ^ turn  # parents come first in breadth-first order
    return flip[:size]


def _runs_along(faces: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Whether each face (n, 3) has the directed edge u -> v of its row in ``edges`` (n, 2)."""
    at = np.argmax(faces == edges[:, :1], axis=1)
    return faces[np.arange(len(faces)), (at + 1) % 3] == edges[:, 1]


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
