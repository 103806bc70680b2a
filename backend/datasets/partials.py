"""Partial shapes for shape completion: copies of a collection's meshes with part of the surface cut
away, as a scan sees only part of an object. nf2vec's completion network learns to map the embedding of
a partial shape to that of the complete one.

Two cuts, taking turns: a **plane** cut removes the faces on one side of a random plane through the
shape and keeps 55-85% of the surface area; a **sphere** cut removes the faces inside a random sphere
centred on the surface, 15-40% of the area. Faces are kept or removed whole (by their centroid), so a
partial mesh is a subset of its source's triangles: an open mesh, which fitting signs by the generalized
winding number.

:func:`make_partials` writes ``NAME-cutK.ply`` per collection mesh plus ``manifest.json``. Each cut's
random stream depends only on (seed, mesh file name, K), so the output is the same byte for byte for
the same arguments, and a re-run (a larger ``limit`` or ``per_mesh``) keeps the files already written.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import trimesh

from backend.datasets.procedural import MANIFEST_NAME, manifest_text, read_manifest
from backend.errors import NeuralShapesError
from backend.files import read_file_bytes, write_atomically

CutKind = Literal["plane", "sphere"]

FORMAT = "neural-shapes/partials"
VERSION = 1
CUTS: tuple[CutKind, ...] = ("plane", "sphere")
KEPT_BY_PLANE = (0.55, 0.85)  # fraction of the surface area a plane cut keeps
KEPT_BY_SPHERE = (0.60, 0.85)  # a sphere cut removes 15-40% of the area
TRIES = 50  # random planes / spheres tried before giving up on a mesh of a few huge faces


@dataclass(frozen=True)
class PartialItem:
    """One partial mesh of a partials folder."""

    file: str  # NAME-cutK.ply, in the partials folder
    source: str  # NAME.ply, the complete mesh in the collection folder
    class_name: str
    label: int  # as in the collection's manifest
    cut: CutKind
    kept_area: float  # fraction of the source's surface area kept, 0-1


@dataclass(frozen=True)
class PartialsManifest:
    root: Path  # the folder holding manifest.json and the partial meshes
    source_collection: str  # the collection folder, relative to root
    seed: int
    items: tuple[PartialItem, ...]


def cut_faces(mesh: trimesh.Trimesh, cut: CutKind, rng: np.random.Generator) -> np.ndarray:
    """Which faces (faces,) bool a random ``cut`` of ``mesh`` keeps (area fractions in the module docstring).

    Raises NeuralShapesError when no plane or sphere of :data:`TRIES` keeps an allowed fraction, which only
    a mesh of a few faces each larger than the allowed range can cause.
    """
    areas = mesh.area_faces
    if not areas.sum() > 0:
        raise NeuralShapesError("the mesh has no surface area to cut")
    centroids = mesh.triangles_center
    allowed = KEPT_BY_PLANE if cut == "plane" else KEPT_BY_SPHERE
    for _ in range(TRIES):
        if cut == "plane":
            direction = rng.normal(size=3)
            farness = centroids @ (direction / np.linalg.norm(direction))  # keep the far side of the plane
        else:
            farness = np.linalg.norm(centroids - _surface_point(mesh, areas, rng), axis=1)  # keep what is outside
        keep = _keep_farthest(farness, areas, rng.uniform(*allowed), allowed)
        if keep is not None:
            return keep
    raise NeuralShapesError(
        f"no {cut} cut keeps {allowed[0]:.0%}-{allowed[1]:.0%} of the surface area: its faces are too large"
    )


def partial_mesh(mesh: trimesh.Trimesh, keep: np.ndarray) -> trimesh.Trimesh:
    """The kept faces (in their order) and the vertices they use (in theirs), nothing else."""
    faces = mesh.faces[keep]
    used = np.unique(faces)
    new_index = np.zeros(len(mesh.vertices), dtype=np.int64)
    new_index[used] = np.arange(len(used))
    return trimesh.Trimesh(mesh.vertices[used], new_index[faces], process=False)


def make_partials(
    collection: Path,
    out_dir: Path,
    per_mesh: int = 1,
    limit: int | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> PartialsManifest:
    """Write ``per_mesh`` cut copies of each of the first ``limit`` (default: all) meshes of the collection
    folder ``collection``, in its manifest order, plus ``manifest.json``, into ``out_dir``.

    Cut K of the collection's i-th mesh is a plane cut when i + K is even, a sphere cut otherwise. Files are
    written atomically, and only when their bytes change. ``progress(done, total)`` follows each source
    mesh. A folder without a collection manifest is a one-line NeuralShapesError; OSError when ``out_dir``
    cannot be written.
    """
    if per_mesh < 1 or (limit is not None and limit < 1):
        raise NeuralShapesError(f"per-mesh cuts and the limit must be at least 1, got {per_mesh} and {limit}")
    source = read_manifest(collection)
    chosen = source.items[:limit]
    out_dir.mkdir(parents=True, exist_ok=True)
    items = []
    for index, entry in enumerate(chosen):
        path = source.root / entry.file
        mesh = trimesh.load_mesh(path, process=False)  # process=False: the faces as they are in the file
        for k in range(per_mesh):
            cut = CUTS[(index + k) % 2]
            rng = np.random.default_rng([seed, zlib.crc32(entry.file.encode()), k])
            try:
                keep = cut_faces(mesh, cut, rng)
            except NeuralShapesError as error:
                raise NeuralShapesError(f"{path}: {error}") from None
            name = f"{path.stem}-cut{k}.ply"
            _write_if_changed(out_dir / name, _ply_bytes(partial_mesh(mesh, keep)))
            kept = float(mesh.area_faces[keep].sum() / mesh.area_faces.sum())
            items.append(PartialItem(name, entry.file, entry.class_name, entry.label, cut, round(kept, 6)))
        if progress is not None:
            progress(index + 1, len(chosen))
    manifest = PartialsManifest(out_dir, Path(os.path.relpath(source.root, out_dir)).as_posix(), seed, tuple(items))
    _write_if_changed(out_dir / MANIFEST_NAME, _manifest_json(manifest).encode())
    return manifest


def read_partials_manifest(path: Path) -> PartialsManifest:
    """Read a partials folder's ``manifest.json`` (or the folder); a missing, foreign or malformed one is a
    one-line NeuralShapesError naming the file."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        data = json.loads(read_file_bytes(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise NeuralShapesError(f"{path}: not a JSON manifest ({error})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        raise NeuralShapesError(f"{path}: not a partials manifest (format {FORMAT} version {VERSION})")
    try:
        items = tuple(_parse_item(entry) for entry in data["items"])
        return PartialsManifest(path.parent, str(data["source_collection"]), int(data["seed"]), items)
    except (KeyError, TypeError, ValueError) as error:
        raise NeuralShapesError(f"{path}: malformed partials manifest ({type(error).__name__}: {error})") from None


def _keep_farthest(
    farness: np.ndarray, areas: np.ndarray, target: float, allowed: tuple[float, float]
) -> np.ndarray | None:
    """Keep the faces of largest ``farness`` whose area fraction is nearest ``target`` within ``allowed``
    (inclusive); None when no number of faces gives an allowed fraction."""
    order = np.argsort(-farness, kind="stable")
    kept = np.cumsum(areas[order]) / areas.sum()  # kept[i]: the fraction of order[: i + 1]
    candidates = np.flatnonzero((kept >= allowed[0]) & (kept <= allowed[1]))
    if not candidates.size:
        return None
    count = candidates[np.argmin(np.abs(kept[candidates] - target))] + 1
    keep = np.zeros(len(areas), dtype=bool)
    keep[order[:count]] = True
    return keep


def _surface_point(mesh: trimesh.Trimesh, areas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A point drawn uniformly on the surface: a face by area, then a uniform point in it."""
    a, b, c = mesh.triangles[rng.choice(len(areas), p=areas / areas.sum())]
    u, v = rng.uniform(size=2)
    if u + v > 1:  # fold the far half of the parallelogram back into the triangle
        u, v = 1 - u, 1 - v
    return a + u * (b - a) + v * (c - a)


def _ply_bytes(mesh: trimesh.Trimesh) -> bytes:
    """Binary little-endian PLY: float32 x, y, z per vertex, uchar count + 3 int32 indices per face."""
    return trimesh.exchange.ply.export_ply(mesh, encoding="binary", vertex_normal=False, include_attributes=False)


def _write_if_changed(path: Path, data: bytes) -> None:
    if not (path.is_file() and path.read_bytes() == data):
        write_atomically(path, data)


def _manifest_json(manifest: PartialsManifest) -> str:
    items = [
        {
            "file": i.file,
            "source": i.source,
            "class": i.class_name,
            "label": i.label,
            "cut": i.cut,
            "kept_area": i.kept_area,
        }
        for i in manifest.items
    ]
    return manifest_text(FORMAT, VERSION, source_collection=manifest.source_collection, seed=manifest.seed, items=items)


def _parse_item(entry: dict) -> PartialItem:
    names = [entry["file"], entry["source"]]
    if not all(isinstance(name, str) and Path(name).name == name for name in names):
        raise ValueError(f"'file' and 'source' must be file names, got {names}")
    if entry["cut"] not in CUTS:
        raise ValueError(f"cut {entry['cut']!r} is not one of {CUTS}")
    return PartialItem(
        entry["file"],
        entry["source"],
        str(entry["class"]),
        int(entry["label"]),
        entry["cut"],
        float(entry["kept_area"]),
    )
