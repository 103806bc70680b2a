"""The SQLite index of the service: shapes, jobs and staged uploads (stdlib ``sqlite3``, WAL, no ORM).

One connection per thread (``sqlite3`` connections must not be shared across threads), autocommit
mode with explicit ``BEGIN IMMEDIATE`` for multi-statement changes. WAL lets status reads go on while
a job writes progress. The ``.h5`` files are the truth for shapes; rows index them (see
:mod:`backend.service.library` for how the two are kept consistent across crashes).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

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


class Database:
    """Per-thread connections to one SQLite file; schema created on open."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.connection().executescript(_SCHEMA)  # idempotent; executescript commits by itself
        with self.transaction() as db:
            found = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if found is None:
                db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(found[0]) != SCHEMA_VERSION:
                raise RuntimeError(f"{self.path}: index schema version {found[0]} is not supported (this service uses {SCHEMA_VERSION})")

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
