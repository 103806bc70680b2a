"""The manifest of a collection conversion: one SQLite row per source mesh, kept in the destination folder.

A row is keyed by the SHA-256 of the source's bytes, so a renamed file is recognised as done and a changed
one (new bytes) is converted again; identical files are converted once. States::

    pending -> running -> done
                       -> failed   (error kept; retried on later runs up to the attempt bound,
                                    unless the input itself is unusable: ``permanent``)
    replaced            (its source path now holds other bytes; the new row took over its output name)

Each row reserves its output name (``stem``, unique) when it is registered, so a batch re-run after a
crash rewrites the same files instead of adding new ones. Only one run may use a manifest at a time
(:class:`ManifestLock`), so rows found ``running`` when a run starts were left by a killed run and go
back to pending. Hashes are cached per (path, size, mtime), so a re-run of an unchanged library does not
read every file again.

Durability as in the service's index: WAL with ``synchronous = FULL``, one transaction per batch.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from backend.errors import NeuralShapesError
from backend.files import safe_file_stem

MANIFEST_NAME = "manifest.sqlite"
SCHEMA_VERSION = 1
STATES = ("pending", "running", "done", "failed", "replaced")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    sha256 TEXT PRIMARY KEY,          -- of the source file's bytes
    source TEXT NOT NULL,             -- the path it was last seen at
    stem TEXT UNIQUE,                 -- output name: DEST/STEM.h5 (NULL once replaced)
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed', 'replaced')),
    attempts INTEGER NOT NULL DEFAULT 0,
    permanent INTEGER NOT NULL DEFAULT 0,  -- failed because the input is unusable: not retried
    error TEXT,
    worker TEXT,                      -- host:pid of the process that ran (or runs) it
    source_bytes INTEGER NOT NULL,
    output_bytes INTEGER,
    surface_error REAL,
    surface_error_p99 REAL,
    chamfer REAL,
    fscore REAL,
    fit_seconds REAL,
    steps INTEGER,
    net TEXT,
    outcome TEXT,                     -- "targets met" or the checks missed
    updated REAL NOT NULL             -- Unix time of the last change
);
CREATE INDEX IF NOT EXISTS items_state ON items (state);
CREATE INDEX IF NOT EXISTS items_source ON items (source);
CREATE TABLE IF NOT EXISTS hashes (   -- cache: a file unchanged since it was hashed is not read again
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL
);
"""

RESULT_COLUMNS = ("surface_error", "surface_error_p99", "chamfer", "fscore", "fit_seconds", "steps", "net", "outcome")


@dataclass(frozen=True)
class Item:
    """One source to convert: its bytes' hash (the row key), where it is, and the output name reserved for it."""

    sha256: str
    source: Path
    stem: str
    attempts: int = 0


@dataclass(frozen=True)
class Registered:
    """What registering the sources found: rows to convert now and how many sources were already handled."""

    todo: list[Item]
    done: int  # sources whose bytes are already converted (renamed or duplicate files included)
    failed: int  # sources whose bytes failed before and are not retried (permanent, or out of attempts)
    unreadable: list[str]  # why each source that could not even be read for hashing was not


class ManifestLock:
    """An exclusive lock on a destination folder for the life of one run (``flock``: released by the
    kernel when the process dies, so a killed run never leaves a stale lock)."""

    def __init__(self, folder: Path):
        self.path = folder / ".manifest.lock"
        self._fd: int | None = None

    def __enter__(self) -> ManifestLock:
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(self._fd)
            raise NeuralShapesError(f"{self.path.parent}: another conversion is using this folder ({holder})") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{socket.gethostname()} pid {os.getpid()}".encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


class Manifest:
    """The manifest database of one destination folder (``DEST/manifest.sqlite``)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / MANIFEST_NAME
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.executescript(_SCHEMA)
            version = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except (sqlite3.DatabaseError, OSError) as error:
            raise NeuralShapesError(f"{self.path}: cannot open the manifest ({error})") from None
        if version is None:
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(version[0]) != SCHEMA_VERSION:
            raise NeuralShapesError(f"{self.path}: manifest schema {version[0]}, this version reads {SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def recover_interrupted(self) -> int:
        """Rows left ``running`` by a run that was killed go back to pending; returns how many.

        Call with the :class:`ManifestLock` held: then no other run can own them."""
        with self._transaction() as db:
            return db.execute("UPDATE items SET state = 'pending', worker = NULL WHERE state = 'running'").rowcount

    def register(self, sources: Iterable[Path], *, max_attempts: int, retry_failed: bool = False) -> Registered:
        """Record every source (hashing new or changed files) and return what to convert now.

        To convert: pending rows, and failed ones with attempts left (``max_attempts``) that are not
        ``permanent``; ``retry_failed`` retries every failed row once more."""
        todo: dict[str, Item] = {}
        done = failed = 0
        unreadable: list[str] = []
        with self._transaction() as db:
            for source in sources:
                try:
                    digest, size = self._hash(db, source)
                except OSError as error:
                    unreadable.append(f"{source}: cannot read file ({error.strerror or error})")
                    continue
                row = db.execute("SELECT * FROM items WHERE sha256 = ?", (digest,)).fetchone()
                if row is None:
                    row = self._insert(db, source, digest, size)
                elif row["state"] == "replaced":  # bytes seen before came back (a file changed back)
                    row = self._revive(db, source, digest)
                elif row["source"] != str(source) and not Path(row["source"]).exists():
                    db.execute("UPDATE items SET source = ? WHERE sha256 = ?", (str(source), digest))  # renamed
                state = row["state"]
                if state == "failed" and retry_failed:
                    db.execute("UPDATE items SET attempts = 0, permanent = 0 WHERE sha256 = ?", (digest,))
                    state, row = "pending", db.execute("SELECT * FROM items WHERE sha256 = ?", (digest,)).fetchone()
                retry = state == "failed" and not row["permanent"] and row["attempts"] < max_attempts
                if state == "done":
                    done += 1
                elif state == "pending" or retry:
                    todo.setdefault(digest, Item(digest, source, row["stem"], row["attempts"]))
                elif state == "failed":
                    failed += 1
        return Registered(list(todo.values()), done, failed, unreadable)

    def _hash(self, db: sqlite3.Connection, source: Path) -> tuple[str, int]:
        stat = os.stat(source)
        key = str(source)
        cached = db.execute("SELECT size, mtime_ns, sha256 FROM hashes WHERE path = ?", (key,)).fetchone()
        if cached is not None and (cached["size"], cached["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns):
            return cached["sha256"], stat.st_size
        digest = hashlib.sha256()
        with open(source, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                digest.update(chunk)
        db.execute(
            "INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?)",
            (key, stat.st_size, stat.st_mtime_ns, digest.hexdigest()),
        )
        return digest.hexdigest(), stat.st_size

    def _insert(self, db: sqlite3.Connection, source: Path, digest: str, size: int) -> sqlite3.Row:
        """A new pending row for new bytes, with the output name :meth:`_claim_stem` gives it."""
        db.execute(
            "INSERT INTO items (sha256, source, stem, state, source_bytes, updated) VALUES (?, ?, ?, 'pending', ?, ?)",
            (digest, str(source), self._claim_stem(db, source, digest), size, time.time()),
        )
        return db.execute("SELECT * FROM items WHERE sha256 = ?", (digest,)).fetchone()

    def _revive(self, db: sqlite3.Connection, source: Path, digest: str) -> sqlite3.Row:
        """A replaced row whose bytes are back at ``source``: pending again under the name :meth:`_claim_stem` gives."""
        db.execute(
            "UPDATE items SET state = 'pending', source = ?, stem = ?, attempts = 0, permanent = 0, error = NULL,"
            " updated = ? WHERE sha256 = ?",
            (str(source), self._claim_stem(db, source, digest), time.time(), digest),
        )
        return db.execute("SELECT * FROM items WHERE sha256 = ?", (digest,)).fetchone()

    def _claim_stem(self, db: sqlite3.Connection, source: Path, digest: str) -> str:
        """The output name for ``digest``'s bytes at ``source``: if the path held other bytes before, their
        row's name (that row becomes ``replaced``; the outputs are rewritten when these are converted),
        else a free one."""
        previous = db.execute(
            "SELECT sha256, stem FROM items WHERE source = ? AND state != 'replaced' AND sha256 != ?",
            (str(source), digest),
        ).fetchone()
        if previous is None:
            return self._free_stem(db, safe_file_stem(source.stem), digest)
        db.execute(
            "UPDATE items SET state = 'replaced', stem = NULL, updated = ? WHERE sha256 = ?",
            (time.time(), previous["sha256"]),
        )
        return previous["stem"]

    @staticmethod
    def _free_stem(db: sqlite3.Connection, stem: str, digest: str) -> str:
        """``stem``, or ``stem-<first hash digits>`` when another source already has that name."""
        taken = db.execute("SELECT 1 FROM items WHERE stem = ?", (stem,)).fetchone()
        return stem if taken is None else f"{stem}-{digest[:10]}"

    def mark_running(self, items: list[Item], worker: str) -> None:
        """Items handed to a worker (``worker``: where it runs, or the pool's name until it reports)."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE items SET state = 'running', worker = ?, attempts = attempts + 1, updated = ? WHERE sha256 = ?",
                [(worker, time.time(), item.sha256) for item in items],
            )

    def release(self, items: list[Item]) -> None:
        """Items handed out but not finished because the run stopped (interrupted, cancelled): pending
        again, the attempt not counted (it was no failure of theirs)."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE items SET state = 'pending', worker = NULL, attempts = MAX(attempts - 1, 0), updated = ?"
                " WHERE sha256 = ? AND state = 'running'",
                [(time.time(), item.sha256) for item in items],
            )

    def record(self, results: list[ItemRecord]) -> None:
        """Store the results of one batch in one transaction."""
        now = time.time()
        with self._transaction() as db:
            for result in results:
                values = [result.metrics.get(column) for column in RESULT_COLUMNS]
                db.execute(
                    f"UPDATE items SET state = ?, permanent = ?, error = ?, worker = ?, output_bytes = ?, updated = ?,"
                    f" {', '.join(f'{c} = ?' for c in RESULT_COLUMNS)} WHERE sha256 = ?",
                    [
                        result.state,
                        int(result.permanent),
                        result.error,
                        result.worker,
                        result.output_bytes,
                        now,
                        *values,
                        result.sha256,
                    ],
                )

    def rows(self, state: str | None = None) -> list[dict]:
        """Every row (or those in ``state``) as a dict, oldest change first."""
        query, args = "SELECT * FROM items", ()
        if state is not None:
            query, args = query + " WHERE state = ?", (state,)
        return [dict(row) for row in self._db.execute(query + " ORDER BY updated, source", args)]

    def counts(self) -> dict[str, int]:
        """Rows per state (every state present, zero where none)."""
        found = dict(self._db.execute("SELECT state, COUNT(*) FROM items GROUP BY state").fetchall())
        return {state: found.get(state, 0) for state in STATES}


@dataclass(frozen=True)
class ItemRecord:
    """The outcome of one item as the manifest stores it."""

    sha256: str
    state: str  # done or failed (or pending: the batch was lost and the item goes back in the queue)
    worker: str | None = None
    error: str | None = None
    permanent: bool = False
    output_bytes: int | None = None
    metrics: dict = field(default_factory=dict)  # RESULT_COLUMNS, for done items
