"""A procedural training collection of meshes: eleven classes of closed shapes for meta-learning a shared
initialisation of neural SDFs and for nf2vec (classification, interpolation, completion).

The generators (one per class) are :mod:`backend.datasets.generators`; :func:`make_shape` adds an orientation (see :data:`ORIENTATIONS`) and, on request, defects;
:func:`make_collection` writes a folder of binary PLY files plus ``manifest.json``. A shape's seed depends only on (collection seed, class
name, number within the class), so ``chair_0007.ply`` is the same file whatever the count or the class
list, and a larger count extends an existing collection.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from backend.datasets.generators import GENERATORS
from backend.errors import NeuralShapesError
from backend.files import write_atomically

CLASSES: tuple[str, ...] = tuple(GENERATORS)  # their order gives the class labels
FORMAT = "neural-shapes-collection"
VERSION = 2  # of the manifest layout; version 1 (no "orientation") is read as "mixed"
GENERATOR_VERSION = 1  # bump when a generator changes, so resumed runs rewrite files made by the old one
MANIFEST_NAME = "manifest.json"
FULL_ROTATION_FRACTION = 0.2  # "mixed": the other shapes stay upright (Z up) with a random yaw
# How shapes are turned. "mixed" (the meta family's collection): 80% upright with any yaw, 20% any rotation.
# "canonical" (nf2vec's): upright, facing +X up to CANONICAL_YAW_JITTER either way, so a class is one pose and
# its prior need not model orientation. "yaw": upright, any yaw. "full": any rotation.
ORIENTATIONS: tuple[str, ...] = ("mixed", "canonical", "yaw", "full")
CANONICAL_YAW_JITTER = math.radians(15)
GOLDEN_RATIO_CONJUGATE = (math.sqrt(5) - 1) / 2


@dataclass(frozen=True)
class CollectionItem:
    """One mesh of a collection."""

    file: str  # file name inside the collection folder
    class_name: str
    label: int  # index of class_name in Manifest.classes
    seed: int  # make_shape(class_name, seed, messy) rebuilds the mesh
    messy: bool  # has holes and / or flipped or duplicated faces
    faces: int


@dataclass(frozen=True)
class Manifest:
    """A collection folder: its settings and its meshes in generation order."""

    root: Path  # the folder holding manifest.json and the meshes
    seed: int
    messy_fraction: float
    classes: tuple[str, ...]  # label i is classes[i]
    items: tuple[CollectionItem, ...]
    orientation: str = "mixed"  # one of ORIENTATIONS

    def mesh_paths(self, classes: Iterable[str] | None = None, exclude: Iterable[str] = ()) -> list[Path]:
        """Paths of the meshes of ``classes`` (default: all) minus those of ``exclude``, in manifest order."""
        wanted = set(self.classes if classes is None else classes) - set(exclude)
        return [self.root / item.file for item in self.items if item.class_name in wanted]


def make_collection(
    out_dir: Path,
    count: int,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    messy_fraction: float = 0.05,
    progress: Callable[[int, int], None] | None = None,
    orientation: str = "mixed",
) -> Manifest:
    """Write ``count`` meshes (classes in turn) as binary PLY files and ``manifest.json`` into ``out_dir``.

    Every file is written to a temporary name and renamed, so an interrupted run leaves no half files, and
    a re-run with the same arguments keeps every file already written (resumable). The output is the same
    byte for byte for the same arguments. ``progress(done, count)`` is called after each mesh.
    Raises ValueError for bad arguments and OSError when the folder cannot be written.
    """
    chosen = _checked_classes(classes)
    _check_orientation(orientation)
    if count < 1:
        raise ValueError(f"the count must be at least 1, got {count}")
    if not 0 <= messy_fraction <= 1:
        raise ValueError(f"the messy fraction must be between 0 and 1, got {messy_fraction}")
    out_dir.mkdir(parents=True, exist_ok=True)
    items = []
    for index in range(count):
        label = index % len(chosen)
        item = _plan_item(chosen[label], label, index // len(chosen), seed, messy_fraction)
        path = out_dir / item.file
        identity = _identity(item, orientation)
        faces = _written_face_count(path, identity)
        if faces is None:
            mesh = make_shape(item.class_name, item.seed, item.messy, orientation)
            write_atomically(path, _ply_bytes(mesh, identity))
            faces = len(mesh.faces)
        items.append(replace(item, faces=faces))
        if progress is not None:
            progress(index + 1, count)
    manifest = Manifest(out_dir, seed, messy_fraction, chosen, tuple(items), orientation)
    text = _manifest_json(manifest).encode()
    manifest_path = out_dir / MANIFEST_NAME
    if not manifest_path.is_file() or manifest_path.read_bytes() != text:
        write_atomically(manifest_path, text)
    return manifest


def read_manifest(path: Path) -> Manifest:
    """Read and check a collection's ``manifest.json`` (or the folder holding it).

    Raises NeuralShapesError, one line naming the file and the cause, for an unreadable or foreign file, a
    version this program does not read, malformed entries, labels that disagree with the class list, or
    missing mesh files.
    """
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise NeuralShapesError(f"{path}: cannot read the manifest ({error.strerror or error})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise NeuralShapesError(f"{path}: not a JSON manifest ({error})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise NeuralShapesError(f"{path}: not a neural-shapes collection manifest (format is not '{FORMAT}')")
    if data.get("version") not in (1, VERSION):
        raise NeuralShapesError(f"{path}: manifest version {data.get('version')!r}, this program reads 1 to {VERSION}")
    try:
        classes = tuple(_typed(name, str, "classes[]") for name in _typed(data.get("classes"), list, "classes"))
        items = tuple(_parse_item(entry) for entry in _typed(data.get("items"), list, "items"))
        orientation = _typed(data.get("orientation", "mixed"), str, "orientation")
        _check_orientation(orientation)
        manifest = Manifest(
            path.parent,
            _typed(data.get("seed"), int, "seed"),
            float(_typed(data.get("messy_fraction"), (int, float), "messy_fraction")),
            classes,
            items,
            orientation,
        )
    except ValueError as error:
        raise NeuralShapesError(f"{path}: malformed manifest ({error})") from None
    for item in items:
        if not 0 <= item.label < len(classes) or classes[item.label] != item.class_name:
            raise NeuralShapesError(
                f"{path}: {item.file} has label {item.label}, which is not class "
                f"'{item.class_name}' in the class list {list(classes)}"
            )
    missing = [item.file for item in items if not (manifest.root / item.file).is_file()]
    if missing:
        raise NeuralShapesError(f"{path}: {len(missing)} mesh file(s) missing, the first {missing[0]}")
    return manifest


def make_shape(class_name: str, seed: int, messy: bool = False, orientation: str = "mixed") -> trimesh.Trimesh:
    """One mesh of ``class_name``, identical for the same arguments, centred on its bounding box.

    Clean meshes are watertight, outward-facing, one piece with volume > 0, 0.6 to 3 units across (no
    particular unit), turned as ``orientation`` says (see :data:`ORIENTATIONS`). With ``messy`` the mesh
    also gets holes, flipped and / or duplicated faces, as scans and hand-made meshes do.
    """
    if class_name not in GENERATORS:
        raise ValueError(f"unknown shape class '{class_name}' (known: {', '.join(CLASSES)})")
    _check_orientation(orientation)
    rng = np.random.default_rng(seed)
    mesh = GENERATORS[class_name](rng)
    mesh.apply_transform(_orientation_matrix(orientation, rng))
    mesh.apply_translation(-mesh.bounds.mean(axis=0))
    return _with_defects(mesh, rng) if messy else mesh


# --- collection files -------------------------------------------------------------------------------


def _checked_classes(classes: Sequence[str] | None) -> tuple[str, ...]:
    if classes is None:
        return CLASSES
    chosen = tuple(classes)
    unknown = [name for name in chosen if name not in CLASSES]
    if unknown or not chosen or len(set(chosen)) != len(chosen):
        known, given = ", ".join(CLASSES), ", ".join(chosen) or "none"
        raise ValueError(f"classes must be distinct names among {known}; got {given}")
    return chosen


def _plan_item(class_name: str, label: int, number: int, seed: int, messy_fraction: float) -> CollectionItem:
    """Name, shape seed and messiness of the ``number``-th mesh of a class (faces not yet known: 0)."""
    # crc32, not hash(): the class's stream must not change between interpreter runs.
    class_key = [seed, zlib.crc32(class_name.encode())]
    shape_seed = int(np.random.SeedSequence([*class_key, number]).generate_state(1)[0])
    # A golden-ratio sequence rather than independent draws: every run of a class's meshes has close to the
    # fraction messy (independent draws gave 7% instead of 5% over 1,000), and it does not depend on the count.
    start = np.random.SeedSequence(class_key).generate_state(1)[0] / 2**32
    messy = bool((start + number * GOLDEN_RATIO_CONJUGATE) % 1 < messy_fraction)
    return CollectionItem(f"{class_name}_{number:04d}.ply", class_name, label, shape_seed, messy, 0)


def _identity(item: CollectionItem, orientation: str) -> str:
    """The PLY header comment that says which call wrote a file, so a resumed run reuses only its own."""
    turned = "" if orientation == "mixed" else f" orientation {orientation}"  # "mixed" files predate the option
    return (
        f"neural-shapes collection generator {GENERATOR_VERSION} "
        f"class {item.class_name} seed {item.seed} messy {int(item.messy)}{turned}"
    )


def _ply_bytes(mesh: trimesh.Trimesh, identity: str) -> bytes:
    """Binary little-endian PLY: float32 x, y, z per vertex, uchar count + 3 int32 indices per face."""
    data = trimesh.exchange.ply.export_ply(mesh, encoding="binary", vertex_normal=False, include_attributes=False)
    after_format_line = data.index(b"\n", data.index(b"format ")) + 1
    return data[:after_format_line] + f"comment {identity}\n".encode() + data[after_format_line:]


def _written_face_count(path: Path, identity: str) -> int | None:
    """Faces of the complete PLY file ``identity`` wrote at ``path``, or None if missing, foreign or cut short."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    header, _, body = data.partition(b"end_header\n")
    lines = header.decode("ascii", "replace").splitlines()
    if f"comment {identity}" not in lines:
        return None
    elements = (fields for fields in map(str.split, lines) if len(fields) == 3 and fields[0] == "element")
    counts = {name: int(count) for _, name, count in elements}
    if len(body) != 12 * counts.get("vertex", 0) + 13 * counts.get("face", 0):  # the layout of _ply_bytes
        return None
    return counts.get("face")


def _manifest_json(manifest: Manifest) -> str:
    items = [
        {"file": i.file, "class": i.class_name, "label": i.label, "seed": i.seed, "messy": i.messy, "faces": i.faces}
        for i in manifest.items
    ]
    return manifest_text(
        FORMAT,
        VERSION,
        seed=manifest.seed,
        messy_fraction=manifest.messy_fraction,
        orientation=manifest.orientation,
        classes=list(manifest.classes),
        items=items,
    )


def manifest_text(format: str, version: int, **fields: object) -> str:
    """A manifest.json's text: its ``format`` and ``version``, then ``fields``, one per line (diffable)."""
    return json.dumps({"format": format, "version": version, **fields}, indent=1) + "\n"


def _parse_item(entry: object) -> CollectionItem:
    entry = _typed(entry, dict, "items[]")
    file = _typed(entry.get("file"), str, "file")
    if Path(file).name != file:  # meshes live in the manifest's folder, never elsewhere
        raise ValueError(f"'file' is {file!r}, not a file name")
    return CollectionItem(
        file=file,
        class_name=_typed(entry.get("class"), str, "class"),
        label=_typed(entry.get("label"), int, "label"),
        seed=_typed(entry.get("seed"), int, "seed"),
        messy=_typed(entry.get("messy"), bool, "messy"),
        faces=_typed(entry.get("faces"), int, "faces"),
    )


def _typed(value: object, kind: type | tuple[type, ...], field: str) -> Any:
    # bool is an int in Python: a true/false where a number belongs is still malformed.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ValueError(f"'{field}' is {value!r}")
    return value


# --- orientation and defects -------------------------------------------------------------------------


def _check_orientation(orientation: str) -> None:
    if orientation not in ORIENTATIONS:
        raise ValueError(f"unknown orientation '{orientation}' (known: {', '.join(ORIENTATIONS)})")


def _orientation_matrix(orientation: str, rng: np.random.Generator) -> np.ndarray:
    """(4, 4) rotation of one shape, drawn from ``rng`` as ``orientation`` says (see :data:`ORIENTATIONS`)."""
    # "mixed" draws in its original order, so collections made before the option keep their bytes.
    full = rng.random() < FULL_ROTATION_FRACTION if orientation == "mixed" else orientation == "full"
    if full:
        return trimesh.transformations.random_rotation_matrix(rand=rng.random(3))
    if orientation == "canonical":
        return trimesh.transformations.rotation_matrix(
            rng.uniform(-CANONICAL_YAW_JITTER, CANONICAL_YAW_JITTER), (0, 0, 1)
        )
    return trimesh.transformations.rotation_matrix(rng.uniform(0, 2 * np.pi), (0, 0, 1))


def _with_defects(mesh: trimesh.Trimesh, rng: np.random.Generator) -> trimesh.Trimesh:
    """The mesh with one to three kinds of defect: holes, flipped faces, duplicated faces."""
    kinds = rng.random(3) < 0.5
    kinds[rng.integers(3)] = True
    holes, flipped, duplicated = kinds
    faces = mesh.faces.copy()
    if holes:  # patches of faces around one to three face centres are deleted
        centres = mesh.triangles_center
        radius = rng.uniform(0.02, 0.06) * mesh.scale
        doomed = np.zeros(len(faces), dtype=bool)
        for face in rng.choice(len(faces), size=rng.integers(1, 4), replace=False):
            doomed |= np.linalg.norm(centres - centres[face], axis=1) < radius
        faces = faces[~doomed]
    if flipped:
        flip = rng.random(len(faces)) < rng.uniform(0.02, 0.1)
        faces[flip] = faces[flip][:, ::-1]
    if duplicated:
        extra = rng.choice(len(faces), size=max(1, int(rng.uniform(0.01, 0.05) * len(faces))), replace=False)
        faces = np.concatenate([faces, faces[extra]])
    return trimesh.Trimesh(mesh.vertices, faces, process=False)  # the defects as made: no merging or clean-up
