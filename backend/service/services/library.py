"""The shape library: ``<data-dir>/shapes/<id>.h5`` files plus one index row each.

Consistency rules (what makes "a finished shape is never lost, a half-written file never appears"):

- a file is written to a temporary name, fsynced, renamed, the folder fsynced; only then is the row
  inserted. A crash in between leaves a complete file without a row: :meth:`Library.recover`
  indexes it again at the next start (and removes temporary leftovers);
- a delete removes the file first, then the row; a crash in between leaves a row without a file,
  which ``recover`` drops;
- files are named by id only; an id is 32 hex characters (checked), never a user-given path.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from backend.errors import NeuralShapesError
from backend.files import write_atomically
from backend.service.db import Database, to_json, utc_now
from backend.service.errors import DiskFull, NotFound, new_id
from backend.shapes.shape_file import NeuralShape, read_shape, shape_from_bytes, shape_to_bytes

log = logging.getLogger(__name__)
_FILE = re.compile(r"([0-9a-f]{32})\.h5")
MAX_NAME = 200
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}  # no EDQUOT on Windows


@dataclass
class RecoveryReport:
    """What :meth:`Library.recover` found and fixed at start."""

    reindexed: list[str] = field(default_factory=list)
    dropped_rows: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    removed_temporary: int = 0


def clean_name(name: str, fallback: str = "shape") -> str:
    """A display name: printable, at most 200 characters, never empty."""
    text = "".join(c for c in str(name) if c.isprintable()).strip()[:MAX_NAME]
    return text or fallback


def _finite(metrics: dict[str, float]) -> dict[str, float | None]:
    # JSON has no infinity (an empty reconstruction's Chamfer distance is infinite): stored as null.
    return {k: (float(v) if math.isfinite(v) else None) for k, v in metrics.items()}


def _public(row: dict) -> dict:
    return {
        "id": row["id"],
        "name": row["name"],
        "family_id": row["family_id"],
        "architecture": _loads(row["architecture"]),
        "metrics": _loads(row["metrics"]),
        "size_bytes": row["size_bytes"],
        "source_sha256": row["source_sha256"],
        "created": row["created"],
        "job_id": row["job_id"],
    }


def _loads(text: str):
    return json.loads(text)


def _architecture_json(shape: NeuralShape) -> str:
    arch = shape.architecture
    return to_json(
        {
            "layer_sizes": arch.layer_sizes,
            "activation": arch.activation,
            "output_activation": arch.output_activation,
            "parameters": arch.parameter_count,
        }
    )


class Library:
    """Shapes on disk and in the index. Thread-safe (SQLite serialises writers; files are per id)."""

    def __init__(self, *, db: Database, shapes_dir: Path):
        self.db = db
        self.shapes_dir = Path(shapes_dir)
        self.shapes_dir.mkdir(parents=True, exist_ok=True)

    # --- writing -------------------------------------------------------------------------------

    def add(self, shape: NeuralShape, *, job_id: str | None = None, half_precision: bool = False) -> dict:
        """Store a shape (file first, then the row); returns its public record."""
        data = shape_to_bytes(shape, half_precision=half_precision)
        return self._store(shape, data, job_id=job_id)

    def import_bytes(self, data: bytes, *, name: str | None = None) -> dict:
        """Validate the content of a ``.h5`` shape file and store it (re-written by this tool, so no
        foreign content is kept). Raises :class:`NeuralShapesError` naming what is wrong."""
        if not data:
            raise NeuralShapesError("empty upload: the body must be the content of a .h5 neural shape file")
        shape = shape_from_bytes(data, source="uploaded file")
        if name is not None:
            shape.name = clean_name(name)
        return self.add(shape)

    def _store(self, shape: NeuralShape, data: bytes, *, job_id: str | None) -> dict:
        shape_id = new_id()
        path = self.shapes_dir / f"{shape_id}.h5"
        try:
            write_atomically(path, data)
        except OSError as error:
            if error.errno in _DISK_FULL:
                raise DiskFull(
                    f"no space left on the disk of {self.shapes_dir} for shape '{clean_name(shape.name)}' "
                    f"({len(data):,} bytes); nothing was stored: free some space and try again"
                ) from None
            raise
        row = {
            "id": shape_id,
            "name": clean_name(shape.name),
            "family_id": shape.family_id,
            "architecture": _architecture_json(shape),
            "metrics": to_json(_finite(shape.metrics)),
            "file": path.name,
            "size_bytes": len(data),
            "source_sha256": str(shape.provenance.get("source_sha256", "")),
            "created": utc_now(),
            "job_id": job_id,
        }
        try:
            self.db.execute(
                "INSERT INTO shapes (id, name, family_id, architecture, metrics, file, size_bytes, source_sha256, created, job_id) "
                "VALUES (:id, :name, :family_id, :architecture, :metrics, :file, :size_bytes, :source_sha256, :created, :job_id)",
                row,
            )
        except Exception:
            path.unlink(missing_ok=True)  # e.g. the index's disk is full: leave no file the caller was told failed
            raise
        return _public(row)

    def delete(self, shape_id: str) -> None:
        """Remove a shape: its file, then its row."""
        row = self._row(shape_id)
        (self.shapes_dir / row["file"]).unlink(missing_ok=True)
        self.db.execute("DELETE FROM shapes WHERE id = ?", (shape_id,))

    # --- reading -------------------------------------------------------------------------------

    def list(self, *, limit: int = 100, offset: int = 0) -> tuple[list[dict], int]:
        """Public records, newest first, and the total count."""
        rows = self.db.all("SELECT * FROM shapes ORDER BY created DESC, id LIMIT ? OFFSET ?", (limit, offset))
        total = self.db.one("SELECT COUNT(*) AS n FROM shapes")["n"]
        return [_public(r) for r in rows], total

    def of_family(self, family_id: str) -> list[dict]:
        """``{"id", "name"}`` of every shape of a model family, oldest first."""
        return self.db.all("SELECT id, name FROM shapes WHERE family_id = ? ORDER BY created, id", (family_id,))

    def get(self, shape_id: str) -> dict:
        """The public record plus the transform and provenance read from the file."""
        record = _public(self._row(shape_id))
        shape = self.load(shape_id)
        record["transform"] = {
            "scale": shape.transform.scale,
            "centre": shape.transform.centre.tolist(),
            "source_to_normalised": shape.transform.matrix().tolist(),
        }
        record["provenance"] = dict(shape.provenance)
        return record

    def load(self, shape_id: str) -> NeuralShape:
        """The stored shape, validated on read."""
        return read_shape(self.file_path(shape_id))

    def file_path(self, shape_id: str) -> Path:
        """Path of an existing shape's file (:class:`NotFound` if it went away)."""
        path = self.shapes_dir / self._row(shape_id)["file"]
        if not path.is_file():
            raise NotFound(f"shape {shape_id} has no file any more (deleted meanwhile)")
        return path

    def _row(self, shape_id: str) -> dict:
        return self.db.by_id("shapes", "shape", shape_id)

    # --- start-up consistency ------------------------------------------------------------------

    def recover(self) -> RecoveryReport:
        """Make files and rows agree after a crash; see the module docstring."""
        report = RecoveryReport()
        for tmp in self.shapes_dir.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            report.removed_temporary += 1
        rows = self.db.all("SELECT id, file, size_bytes FROM shapes")
        on_disk = {p.name: p.stat().st_size for p in self.shapes_dir.iterdir() if _FILE.fullmatch(p.name)}
        for row in rows:
            size = on_disk.get(row["file"])
            if size is None:
                self.db.execute("DELETE FROM shapes WHERE id = ?", (row["id"],))
                report.dropped_rows.append(row["id"])
            elif size != row["size_bytes"]:  # not the file that was indexed (changed outside the service)
                self._quarantine(row["file"], f"{size:,} bytes where {row['size_bytes']:,} were stored", report)
                self.db.execute("DELETE FROM shapes WHERE id = ?", (row["id"],))
                report.dropped_rows.append(row["id"])
        indexed = {row["file"] for row in rows}
        for name in sorted(set(on_disk) - indexed):
            path = self.shapes_dir / name
            try:
                shape = read_shape(path)
            except NeuralShapesError as error:
                self._quarantine(name, str(error), report)
                continue
            shape_id = _FILE.fullmatch(name).group(1)
            self._index_existing(shape_id, shape, path)
            report.reindexed.append(shape_id)
        return report

    def _quarantine(self, name: str, reason: str, report: RecoveryReport) -> None:
        """Move a shape file out of the library into ``<data-dir>/quarantine`` (kept for the user to inspect)."""
        quarantine = self.shapes_dir.parent / "quarantine"
        quarantine.mkdir(exist_ok=True)
        (self.shapes_dir / name).replace(quarantine / name)
        report.quarantined.append(name)
        log.warning("moved an unreadable shape file to %s: %s", quarantine, reason)

    def _index_existing(self, shape_id: str, shape: NeuralShape, path: Path) -> None:
        self.db.execute(
            "INSERT INTO shapes (id, name, family_id, architecture, metrics, file, size_bytes, source_sha256, created, job_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            (
                shape_id,
                clean_name(shape.name),
                shape.family_id,
                _architecture_json(shape),
                to_json(_finite(shape.metrics)),
                path.name,
                path.stat().st_size,
                str(shape.provenance.get("source_sha256", "")),
                utc_now(),
            ),
        )
