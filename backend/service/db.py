"""The SQLite index of the service: shapes, jobs and staged uploads (stdlib ``sqlite3``, WAL, no ORM).

One connection per thread (``sqlite3`` connections must not be shared across threads), autocommit
mode with explicit ``BEGIN IMMEDIATE`` for multi-statement changes. WAL lets status reads go on while
a job writes progress. The ``.h5`` files are the truth for shapes; rows index them (see
:mod:`backend.service.services.library` for how the two are kept consistent across crashes).

Durability: WAL with ``synchronous = FULL``. A killed process loses no commit in either FULL or
NORMAL (the WAL is written before COMMIT returns; the kernel keeps it). On power loss NORMAL may
drop the last commits, so a shape or job the API already confirmed could vanish; FULL syncs the
WAL at every commit, which costs one fsync per shape, job change or progress write (at most 4/s per
job): cheap next to fitting.

A damaged index (not SQLite at all, truncated, ``quick_check`` failing) does not stop the service:
it is moved aside to ``index.sqlite3.corrupt-<UTC time>`` (with its ``-wal`` / ``-shm``), one log
line says so, and a new index is made. The library then re-indexes every shape from its ``.h5`` file
(:meth:`backend.service.services.library.Library.recover`); job history and staged uploads are not recovered.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backend.service.errors import NotFound, check_id

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1
_DAMAGE_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS shapes (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    family_id TEXT NOT NULL,
    architecture TEXT NOT NULL,      -- JSON
    metrics TEXT NOT NULL,           -- JSON
    file TEXT NOT NULL,              -- file name inside <data-dir>/shapes, never a user-given path
    size_bytes INTEGER NOT NULL,
    source_sha256 TEXT NOT NULL,
    created TEXT NOT NULL,           -- ISO 8601 UTC
    job_id TEXT                      -- the job that made it, NULL for imports
);
CREATE INDEX IF NOT EXISTS shapes_created ON shapes (created);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,             -- queued, running, succeeded, failed, cancelled
    progress REAL NOT NULL DEFAULT 0,
    stage TEXT NOT NULL DEFAULT '',
    error TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL,
    started TEXT,
    finished TEXT,
    inputs TEXT NOT NULL,            -- JSON
    outputs TEXT NOT NULL DEFAULT '{}'  -- JSON
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created);
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    vertices INTEGER NOT NULL,
    faces INTEGER NOT NULL,
    source_sha256 TEXT NOT NULL,
    file TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    created TEXT NOT NULL
);
"""


def utc_now() -> str:
    """Current time as ISO 8601 UTC with microseconds (sorts as text)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def to_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


class IndexDamaged(sqlite3.DatabaseError):
    """``PRAGMA quick_check`` found damage SQLite did not report while opening."""


class Database:
    """Per-thread connections to one SQLite file; schema created on open, a damaged file moved aside
    (see the module docstring)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            self._open_index()
        except sqlite3.DatabaseError as error:
            if not isinstance(error, IndexDamaged) and getattr(error, "sqlite_errorcode", None) not in _DAMAGE_CODES:
                raise  # locked, read-only, disk full ...: not the file's fault, leave it alone
            self.close()
            aside = _move_aside(self.path)
            log.warning(
                "%s is not a valid SQLite database (%s): moved to %s; a new index is made and shapes are re-indexed from their .h5 files",
                self.path,
                error,
                aside.name,
            )
            self._open_index()

    def _open_index(self) -> None:
        problems = [row[0] for row in self.connection().execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            raise IndexDamaged(f"quick_check: {problems[0]}")
        self.connection().executescript(_SCHEMA)  # idempotent; executescript commits by itself
        with self.transaction() as db:
            found = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if found is None:
                db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(found[0]) != SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path}: index schema version {found[0]} is not supported (this service uses {SCHEMA_VERSION})"
                )

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on any exception)."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def execute(self, sql: str, params: tuple | dict = ()) -> sqlite3.Cursor:
        return self.connection().execute(sql, params)

    def one(self, sql: str, params: tuple | dict = ()) -> dict | None:
        row = self.connection().execute(sql, params).fetchone()
        return dict(row) if row is not None else None

    def all(self, sql: str, params: tuple | dict = ()) -> list[dict]:
        return [dict(row) for row in self.connection().execute(sql, params).fetchall()]

    def by_id(self, table: str, what: str, row_id: str) -> dict:
        """The row of ``table`` (of ``what``: "shape", "upload") with id ``row_id``, checked first;
        :class:`NotFound` when there is none."""
        check_id(row_id, what)
        row = self.one(f"SELECT * FROM {table} WHERE id = ?", (row_id,))
        if row is None:
            raise NotFound(f"no {what} with id {row_id}")
        return row

    def close(self) -> None:
        """Close every connection this object opened (call when no thread uses it any more)."""
        with self._lock:
            for conn in self._connections:
                try:
                    conn.close()
                except sqlite3.ProgrammingError:  # closed from another thread's perspective
                    pass
            self._connections.clear()
        self._local = threading.local()


def _move_aside(path: Path) -> Path:
    """Rename a damaged database and its companions to ``<name>.corrupt-<UTC time>[-wal|-shm]``; the
    journal files go first, so a kill half way never leaves an old WAL next to a new database."""
    aside = path.with_name(f"{path.name}.corrupt-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}")
    for suffix in ("-wal", "-shm", ""):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            companion.replace(aside.with_name(aside.name + suffix))
    return aside
