"""One service per data folder (its lock, service.json, leftovers), a private data folder and token, a
damaged index moved aside and rebuilt from the shape files, and a bounded kill-9 loop."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from backend.errors import NeuralShapesError
from backend.service.db import Database
from backend.service.security import AlreadyServing, DataDirLock, load_or_create_token, secure_data_dir
from backend.service.services.job_queue import INTERRUPTED, JobKind, JobManager
from backend.service.services.library import Library
from backend.service.services.uploads import Uploads
from bench.bench_kill9 import make_h5, run_loop
from tests.conftest import run_cli
from tests.service_server import ServerProcess

pytestmark = pytest.mark.service

STRANGER = 65534  # "nobody": a user id that is not this process's


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _lock_is_free(data) -> bool:
    """The documented staleness test: a non-blocking flock on service.lock succeeds."""
    fd = os.open(data / "service.lock", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def _snapshot(data) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in data.iterdir() if p.is_file()}


@pytest.mark.slow
def test_a_second_service_on_the_folder_refuses_in_one_line_and_touches_nothing(tmp_path):
    data = tmp_path / "data"
    first = ServerProcess(data)
    try:
        assert first.client.health().status == "ok"
        before = _snapshot(data)
        assert json.loads(before["service.json"][0]) == {"url": first.url, "pid": first.process.pid}
        assert all(stat.S_IMODE((data / name).stat().st_mode) == 0o600 for name in before)  # made under umask 077
        second = run_cli("serve", "--port", "0", "--data-dir", data, timeout=300)
        lines = second.stderr.strip().splitlines()
        assert second.returncode == 1 and second.stdout == "" and len(lines) == 1, second.stderr
        assert str(data) in lines[0] and f"pid {first.process.pid}" in lines[0]
        assert _snapshot(data) == before  # service.json, token, lock and index untouched
        assert not _lock_is_free(data)
    finally:
        first.kill()

    # kill -9 leaves a stale service.json: its pid is dead and the lock is free, as documented
    stale = json.loads((data / "service.json").read_text())
    assert not _pid_alive(stale["pid"]) and _lock_is_free(data)
    (data / ".service.json.tmp").write_text("{")
    (data / ".token.12345.tmp").write_text("half")
    second = ServerProcess(data)
    try:
        assert json.loads((data / "service.json").read_text()) == {"url": second.url, "pid": second.process.pid}
        assert not list(data.glob(".*.tmp"))
        assert second.terminate() == 0
        assert not (data / "service.json").exists() and _lock_is_free(data)
    finally:
        second.stop()


def test_lock_in_process(tmp_path):
    lock = DataDirLock.acquire(tmp_path)
    with pytest.raises(AlreadyServing, match=rf"data folder {tmp_path} is already served by pid {os.getpid()}"):
        DataDirLock.acquire(tmp_path)
    lock.release()
    DataDirLock.acquire(tmp_path).release()


def test_data_folder_others_can_read_is_tightened_when_ours(tmp_path, caplog):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o777)
    with caplog.at_level(logging.WARNING):
        secure_data_dir(data)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert "could be read or written by others (mode 0777): set to 0700" in caplog.text
    secure_data_dir(tmp_path / "new" / "data")
    assert stat.S_IMODE((tmp_path / "new" / "data").stat().st_mode) == 0o700


def _foreign_open_folder(tmp_path):
    """A folder others can read that belongs to another user (made so as root, else '/')."""
    if os.geteuid() != 0:
        return Path("/")  # refused before anything is written
    folder = tmp_path / "foreign"
    folder.mkdir()
    os.chown(folder, STRANGER, STRANGER)
    os.chmod(folder, 0o755)
    return folder


def test_data_folder_of_another_user_is_refused(tmp_path):
    folder = _foreign_open_folder(tmp_path)
    mode = stat.S_IMODE(folder.stat().st_mode)
    with pytest.raises(
        NeuralShapesError,
        match=rf"data folder {folder} can be read or written by others \(mode {mode:04o}\) and belongs to user id",
    ):
        secure_data_dir(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == mode

    refused = run_cli("serve", "--port", "0", "--data-dir", folder, timeout=300)
    assert (
        refused.returncode == 1
        and len(refused.stderr.strip().splitlines()) == 1
        and "use a folder of your own" in refused.stderr
    )
    assert not (folder / "service.lock").exists() and not (folder / "token").exists()


def test_token_others_could_read_or_another_user_owns_is_replaced(tmp_path):
    path = tmp_path / "token"
    first = load_or_create_token(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and load_or_create_token(path) == first
    os.chmod(path, 0o644)
    second = load_or_create_token(path)
    assert second != first and stat.S_IMODE(path.stat().st_mode) == 0o600
    if os.geteuid() == 0:
        os.chown(path, STRANGER, STRANGER)
        third = load_or_create_token(path)
        assert third != second and path.stat().st_uid == 0


def _library_with_one_shape(data) -> tuple[str, int]:
    db = Database(data / "index.sqlite3")
    record = Library(db=db, shapes_dir=data / "shapes").import_bytes(make_h5(), name="kept")
    db.close()
    return record["id"], record["size_bytes"]


@pytest.mark.parametrize("damage", ["random bytes", "truncated", "text file"])
def test_damaged_index_is_moved_aside_and_shapes_reindexed(tmp_path, caplog, damage):
    shape_id, size = _library_with_one_shape(tmp_path)
    index = tmp_path / "index.sqlite3"
    if damage == "random bytes":
        index.write_bytes(os.urandom(8192))
    elif damage == "truncated":
        with sqlite3.connect(index) as conn:  # pages past the cut that the schema points at
            conn.execute("CREATE TABLE filler (x BLOB)")
            conn.executemany("INSERT INTO filler VALUES (?)", [(os.urandom(500),) for _ in range(200)])
        index.write_bytes(index.read_bytes()[: index.stat().st_size // 2])
    else:
        index.write_text("these are my notes, not a database\n")
    with caplog.at_level(logging.WARNING):
        db = Database(index)
    library = Library(db=db, shapes_dir=tmp_path / "shapes")
    assert library.recover().reindexed == [shape_id]
    assert [(s["id"], s["name"], s["size_bytes"]) for s in library.list()[0]] == [(shape_id, "kept", size)]
    db.close()
    aside = [
        p for p in tmp_path.glob("index.sqlite3.corrupt-*") if not p.name.endswith(("-wal", "-shm"))
    ]  # companions go along
    assert len(aside) == 1
    lines = [r.getMessage() for r in caplog.records if "is not a valid SQLite database" in r.getMessage()]
    assert len(lines) == 1 and aside[0].name in lines[0] and "re-indexed from their .h5 files" in lines[0]


def test_damaged_index_through_the_service(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    shape_id, _ = _library_with_one_shape(data)
    (data / "index.sqlite3").write_bytes(os.urandom(4096))
    server = ServerProcess(data)
    try:
        assert [s.id for s in server.client.shapes()] == [shape_id]
    finally:
        server.terminate()
    log = server.log()
    assert log.count("is not a valid SQLite database") == 1 and "Traceback" not in log


def test_running_job_with_a_cancel_asked_for_ends_cancelled_after_a_crash(tmp_path):
    db = Database(tmp_path / "index.sqlite3")
    for job_id, cancel in (("a" * 32, 0), ("b" * 32, 1)):
        db.execute(
            "INSERT INTO jobs (id, kind, state, cancel_requested, created, inputs) VALUES (?, 'noop', 'running', ?, '', '{}')",
            (job_id, cancel),
        )
    jobs = JobManager(db=db, kinds=[JobKind("noop", lambda context: {})])
    assert jobs.start() == {"interrupted": 2, "resumed": 0}
    assert (jobs.get("a" * 32)["state"], jobs.get("a" * 32)["error"]) == ("failed", INTERRUPTED)
    assert (jobs.get("b" * 32)["state"], jobs.get("b" * 32)["error"]) == ("cancelled", None)
    jobs.shutdown()
    db.close()


def test_upload_rows_without_files_and_files_without_rows_are_dropped_at_start(tmp_path, box_mesh):
    db = Database(tmp_path / "index.sqlite3")
    uploads = Uploads(db=db, uploads_dir=tmp_path / "uploads", max_faces=1000, max_bytes=1 << 20)
    raw = box_mesh.vertices.astype("<f4").tobytes() + box_mesh.faces.astype("<i4").tobytes()
    kept, half_deleted = (
        uploads.add(raw, format="raw", name=name, vertex_count=len(box_mesh.vertices)) for name in ("kept", "half")
    )
    (tmp_path / "uploads" / f"{half_deleted['id']}.npz").unlink()  # a kill between a delete's file and row
    (tmp_path / "uploads" / f"{'d' * 32}.npz").write_bytes(b"x")  # a kill between an upload's file and row
    uploads.purge(older_than_seconds=3600, keep=set())
    assert [row["id"] for row in db.all("SELECT id FROM uploads")] == [kept["id"]]
    assert sorted(p.name for p in (tmp_path / "uploads").iterdir()) == [f"{kept['id']}.npz"]
    db.close()


@pytest.mark.slow
def test_kill_9_loop_bounded(tmp_path):
    """8 SIGKILLs (timer, mid-request, mid-store, during start-up) of the real service; every restart
    finds a sound index, no orphans, no lost shape, no stuck job, no temporary file (bench_kill9)."""
    started = time.monotonic()
    result = run_loop(tmp_path / "data", kills=8, seed=11, report=lambda line: None)
    assert result.problems == [] and result.api_errors == []
    assert sum(t.kills for t in result.tallies.values()) == 8 and len(result.startups) >= 5
    assert time.monotonic() - started < 600
