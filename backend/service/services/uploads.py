"""Staged meshes: an upload is checked and normalised at once (a bad mesh is a 400 right away) and
kept as ``<data-dir>/uploads/<id>.npz`` until a job uses it. Jobs keep only upload ids in their
inputs, so queued work survives a restart and a future batch runner can share the same staging.

Accepted formats (``MESH_FORMATS``):

- ``raw``: little-endian float32 vertices (v, 3) followed by int32 faces (f, 3); ``vertex_count`` says v;
- ``npz``: a NumPy ``.npz`` with arrays ``vertices`` (v, 3) float and ``faces`` (f, 3) int, read with
  ``allow_pickle=False`` after each member's .npy header and unpacked size are checked against the
  vertex and face limits (no zip bombs; other members are never unpacked);
- ``obj``, ``ply``, ``stl``, ``off``, ``glb``: a mesh file; nothing outside the body is read.
"""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from backend.errors import NeuralShapesError
from backend.files import write_atomically
from backend.meshes.loading import NormalisedMesh, load_mesh_bytes, normalise_mesh, one_line, vertex_limit
from backend.service.db import Database, utc_now
from backend.service.errors import NotFound, TooLarge, new_id
from backend.service.services.library import clean_name
from backend.shapes.frame import Similarity

MESH_FORMATS = ("raw", "npz", "obj", "ply", "stl", "off", "glb")
NPY_HEADER_BYTES = 10_000  # numpy's own default cap on a .npy header


class Uploads:
    """Staged, normalised meshes on disk plus their index rows."""

    def __init__(self, *, db: Database, uploads_dir: Path, max_faces: int, max_bytes: int):
        self.db = db
        self.dir = Path(uploads_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_faces = max_faces
        self.max_bytes = max_bytes

    def add(self, data: bytes, *, format: str, name: str, vertex_count: int | None = None) -> dict:
        """Check, normalise and stage one mesh; returns its public record."""
        name = clean_name(name, fallback="mesh")
        mesh = self._parse(data, format=format, name=name, vertex_count=vertex_count)
        upload_id = new_id()
        path = self.dir / f"{upload_id}.npz"
        staged = io.BytesIO()
        np.savez(
            staged,
            vertices=mesh.vertices,
            faces=mesh.faces,
            scale=np.float64(mesh.transform.scale),
            centre=mesh.transform.centre,
            clean=np.bool_(mesh.clean),
        )
        write_atomically(path, staged.getvalue())
        record = {
            "id": upload_id,
            "name": name,
            "vertices": len(mesh.vertices),
            "faces": len(mesh.faces),
            "source_sha256": mesh.source_sha256,
            "file": path.name,
            "size_bytes": path.stat().st_size,
            "created": utc_now(),
        }
        self.db.execute(
            "INSERT INTO uploads (id, name, vertices, faces, source_sha256, file, size_bytes, created) "
            "VALUES (:id, :name, :vertices, :faces, :source_sha256, :file, :size_bytes, :created)",
            record,
        )
        return _public(record)

    def get(self, upload_id: str) -> dict:
        return _public(self._row(upload_id))

    def load(self, upload_id: str) -> NormalisedMesh:
        """The staged mesh, as fitting takes it (normalised frame, with its transform)."""
        row = self._row(upload_id)
        try:
            with np.load(self.dir / row["file"], allow_pickle=False) as f:
                return NormalisedMesh(
                    name=row["name"],
                    vertices=f["vertices"],
                    faces=f["faces"],
                    transform=Similarity(scale=float(f["scale"]), centre=f["centre"]),
                    source_sha256=row["source_sha256"],
                    clean=bool(f["clean"]),
                )
        except (OSError, KeyError, ValueError) as error:
            raise NotFound(f"upload {upload_id} is no longer readable ({type(error).__name__})") from None

    def delete(self, upload_id: str) -> None:
        row = self._row(upload_id)
        (self.dir / row["file"]).unlink(missing_ok=True)
        self.db.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))

    def purge(self, *, older_than_seconds: float, keep: set[str]) -> int:
        """Remove uploads older than the limit that no pending job needs, temporary leftovers, files
        without rows and rows without files; returns how many uploads were removed."""
        for tmp in self.dir.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        limit = (datetime.now(UTC) - timedelta(seconds=older_than_seconds)).isoformat(timespec="microseconds")
        removed = 0
        for row in self.db.all("SELECT id, file FROM uploads WHERE created < ?", (limit,)):
            if row["id"] not in keep:
                (self.dir / row["file"]).unlink(missing_ok=True)
                self.db.execute("DELETE FROM uploads WHERE id = ?", (row["id"],))
                removed += 1
        known = set()
        for row in self.db.all("SELECT id, file FROM uploads"):
            if (self.dir / row["file"]).is_file():
                known.add(row["file"])
            else:  # killed between the two steps of a delete (file, then row)
                self.db.execute("DELETE FROM uploads WHERE id = ?", (row["id"],))
        for path in self.dir.glob("*.npz"):
            if path.name not in known:
                path.unlink(missing_ok=True)
        return removed

    def _row(self, upload_id: str) -> dict:
        return self.db.by_id("uploads", "upload", upload_id)

    # --- parsing -------------------------------------------------------------------------------

    def _parse(self, data: bytes, *, format: str, name: str, vertex_count: int | None) -> NormalisedMesh:
        if format not in MESH_FORMATS:
            raise NeuralShapesError(f"unknown mesh format '{format}' (expected one of {', '.join(MESH_FORMATS)})")
        if not data:
            raise NeuralShapesError(f"{name}: empty upload")
        if format == "raw":
            vertices, faces = parse_raw_mesh(data, vertex_count)
        elif format == "npz":
            vertices, faces = self._parse_npz(data, name)
        else:
            return load_mesh_bytes(data, format, name=name, max_faces=self.max_faces)
        return normalise_mesh(vertices, faces, name=name, max_faces=self.max_faces)

    def _parse_npz(self, data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
        rows = {"vertices": vertex_limit(self.max_faces), "faces": self.max_faces}
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                missing = [key for key in rows if f"{key}.npy" not in archive.namelist()]
                if missing:
                    raise NeuralShapesError(
                        f"{name}: the .npz lacks the array(s) {', '.join(missing)} (needs vertices (v, 3) and faces (f, 3))"
                    )
                for key, limit in rows.items():
                    _check_npy_member(archive.getinfo(f"{key}.npy"), archive, limit, name)
            # Only the two checked members are read (NpzFile loads members on access).
            with np.load(io.BytesIO(data), allow_pickle=False) as f:
                vertices, faces = f["vertices"], f["faces"]
        except NeuralShapesError:
            raise
        except Exception as error:  # noqa: BLE001 (zipfile / np.load: BadZipFile, ValueError, OSError, zlib errors for damage)
            raise NeuralShapesError(
                one_line(f"{name}: cannot read the .npz ({type(error).__name__}: {error})")
            ) from None
        return vertices, faces


def _check_npy_member(info: zipfile.ZipInfo, archive: zipfile.ZipFile, max_rows: int, name: str) -> None:
    """Refuse a ``.npz`` member before it is unpacked unless its .npy header says (n, 3) real numbers with
    n <= ``max_rows`` and the zip directory's unpacked size is exactly that header plus that data."""
    key = info.filename.removesuffix(".npy")
    if info.file_size > NPY_HEADER_BYTES + 3 * 8 * max_rows:  # 8 bytes: the widest number type accepted
        raise TooLarge(
            f"{name}: the .npz member {key} unpacks to {info.file_size:,} bytes, more than {max_rows:,} rows of 3 numbers need"
        )
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version not in ((1, 0), (2, 0)):
            raise NeuralShapesError(f"{name}: the .npz member {key} has .npy version {version}, expected 1.0 or 2.0")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(member, max_header_size=NPY_HEADER_BYTES)
        header_bytes = member.tell()
    kinds = "iu" if key == "faces" else "iuf"
    if dtype.kind not in kinds or dtype.itemsize > 8:
        what = "an integer" if key == "faces" else "a real number"
        raise NeuralShapesError(
            f"{name}: the .npz member {key} must be {what} array of at most 8 bytes per item, got dtype {dtype}"
        )
    if len(shape) != 2 or shape[1] != 3:
        raise NeuralShapesError(f"{name}: the .npz member {key} must have shape (n, 3), got {shape}")
    if shape[0] > max_rows:
        raise TooLarge(f"{name}: the .npz member {key} has {shape[0]:,} rows, more than the limit of {max_rows:,}")
    if info.file_size != header_bytes + shape[0] * 3 * dtype.itemsize:
        raise NeuralShapesError(
            f"{name}: the .npz member {key} holds {info.file_size:,} bytes, not the {shape} {dtype} its header declares"
        )


def parse_raw_mesh(data: bytes, vertex_count: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Split ``raw`` bytes into vertices (v, 3) float32 and faces (f, 3) int32 (see the module docstring)."""
    if vertex_count is None:
        raise NeuralShapesError("format 'raw' needs vertex_count (the number of vertices before the faces)")
    if vertex_count < 1:
        raise NeuralShapesError(f"vertex_count must be positive, got {vertex_count}")
    vertex_bytes = 12 * vertex_count
    if len(data) < vertex_bytes or (len(data) - vertex_bytes) % 12:
        raise NeuralShapesError(
            f"raw mesh body of {len(data):,} bytes does not hold {vertex_count:,} float32 vertices (12 bytes each) "
            "followed by whole int32 triangles (12 bytes each)"
        )
    vertices = np.frombuffer(data, dtype="<f4", count=3 * vertex_count).reshape(-1, 3)
    faces = np.frombuffer(data, dtype="<i4", offset=vertex_bytes).reshape(-1, 3)
    return vertices, faces


def _public(row: dict) -> dict:
    return {k: row[k] for k in ("id", "name", "vertices", "faces", "source_sha256", "size_bytes", "created")}
