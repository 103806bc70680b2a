"""Staged meshes: an upload is checked and normalised at once (a bad mesh is a 400 right away) and
kept as ``<data-dir>/uploads/<id>.npz`` until a job uses it. Jobs keep only upload ids in their
inputs, so queued work survives a restart and a future batch runner can share the same staging.

Accepted formats (``MESH_FORMATS``):

- ``raw``: little-endian float32 vertices (v, 3) followed by int32 faces (f, 3); ``vertex_count`` says v;
- ``npz``: a NumPy ``.npz`` with arrays ``vertices`` (v, 3) float and ``faces`` (f, 3) int, read with
  ``allow_pickle=False`` after its members' sizes are checked (no zip bombs);
- ``obj``, ``ply``, ``stl``, ``off``, ``glb``: a mesh file; nothing outside the body is read.
"""

from __future__ import annotations

import io
import os
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from backend.errors import NeuralShapesError
from backend.mesh_loading import NormalisedMesh, Similarity, load_mesh_bytes, normalise_mesh
from backend.service.db import Database, utc_now
from backend.service.errors import NotFound, TooLarge, check_id, new_id
from backend.service.library import clean_name

MESH_FORMATS = ("raw", "npz", "obj", "ply", "stl", "off", "glb")
NPZ_EXPANSION = 8  # an npz may unpack to at most this many times the upload limit


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
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with open(tmp, "wb") as out:
                np.savez(
                    out,
                    vertices=mesh.vertices,
                    faces=mesh.faces,
                    scale=np.float64(mesh.transform.scale),
                    centre=mesh.transform.centre,
                    clean=np.bool_(mesh.clean),
                )
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
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
        """Remove uploads older than the limit that no pending job needs, temporary leftovers and
        files without rows; returns how many uploads were removed."""
        for tmp in self.dir.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        limit = (datetime.now(UTC) - timedelta(seconds=older_than_seconds)).isoformat(timespec="microseconds")
        removed = 0
        for row in self.db.all("SELECT id, file FROM uploads WHERE created < ?", (limit,)):
            if row["id"] not in keep:
                (self.dir / row["file"]).unlink(missing_ok=True)
                self.db.execute("DELETE FROM uploads WHERE id = ?", (row["id"],))
                removed += 1
        known = {row["file"] for row in self.db.all("SELECT file FROM uploads")}
        for path in self.dir.glob("*.npz"):
            if path.name not in known:
                path.unlink(missing_ok=True)
        return removed

    def _row(self, upload_id: str) -> dict:
        check_id(upload_id, "upload")
        row = self.db.one("SELECT * FROM uploads WHERE id = ?", (upload_id,))
        if row is None:
            raise NotFound(f"no upload with id {upload_id}")
        return row

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
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                unpacked = sum(info.file_size for info in archive.infolist())
        except (zipfile.BadZipFile, OSError, ValueError) as error:
            raise NeuralShapesError(f"{name}: not a valid .npz file ({error})") from None
        if unpacked > NPZ_EXPANSION * self.max_bytes:
            raise TooLarge(f"{name}: the .npz unpacks to {unpacked:,} bytes, more than {NPZ_EXPANSION * self.max_bytes:,}")
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as f:
                missing = [key for key in ("vertices", "faces") if key not in f.files]
                if missing:
                    raise NeuralShapesError(f"{name}: the .npz lacks the array(s) {', '.join(missing)} (needs vertices (v, 3) and faces (f, 3))")
                vertices, faces = f["vertices"], f["faces"]
        except NeuralShapesError:
            raise
        except Exception as error:  # noqa: BLE001 (np.load: ValueError for object arrays, OSError / zip / zlib errors for damage)
            raise NeuralShapesError(f"{name}: cannot read the .npz ({type(error).__name__}: {error})".splitlines()[0]) from None
        if not np.issubdtype(vertices.dtype, np.number) or vertices.dtype.kind == "c":
            raise NeuralShapesError(f"{name}: vertices must be a real number array, got dtype {vertices.dtype}")
        if not np.issubdtype(faces.dtype, np.integer):
            raise NeuralShapesError(f"{name}: faces must be an integer array, got dtype {faces.dtype}")
        return vertices, faces


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
