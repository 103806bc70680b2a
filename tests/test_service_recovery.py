"""Crashes and restarts: kill -9 in the middle of a job, files and rows after a crash, the job pool's
bookkeeping (in process, with toy job kinds)."""

from __future__ import annotations

import shutil
import signal
import threading
import time

import pytest

from backend.errors import NeuralShapesError, check_cancel
from backend.service.db import Database
from backend.service.services.job_queue import INTERRUPTED, JobContext, JobKind, JobManager
from backend.service.services.library import Library
from backend.shapes.shape_file import read_shape
from tests.service_server import QUICK_FIT, SLOW_FIT, ServerProcess

pytestmark = pytest.mark.service


def _wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_kill_9_mid_job_then_restart(tmp_path, box_mesh):
    data = tmp_path / "data"
    server = ServerProcess(data)
    try:
        client = server.client
        done = client.wait(
            client.start_fit(
                [client.upload_mesh(box_mesh.vertices, box_mesh.faces, name="kept").id],
                settings=QUICK_FIT,
                resolution=32,
            ).id,
            timeout=120,
        )
        assert done.state == "succeeded"
        kept = done.shape_ids[0]
        kept_bytes = client.download_shape(kept)
        slow = client.start_fit(
            [client.upload_mesh(box_mesh.vertices, box_mesh.faces, name="slow").id], settings=SLOW_FIT, resolution=32
        )
        waiting = client.start_fit(
            [client.upload_mesh(box_mesh.vertices, box_mesh.faces, name="waiting").id],
            settings=QUICK_FIT,
            resolution=32,
        )
        _wait_until(lambda: client.job(slow.id).stage.startswith("fitting"))
        assert client.job(waiting.id).state == "queued"
    finally:
        server.kill()

    # What a crash can leave besides: a half-written temporary file and a complete file with no row yet.
    shapes = data / "shapes"
    (shapes / f".{'a' * 32}.h5.999.tmp").write_bytes(b"half written")
    orphan = "b" * 32
    shutil.copy(shapes / f"{kept}.h5", shapes / f"{orphan}.h5")

    server = ServerProcess(data)
    try:
        client = server.client
        assert client.download_shape(kept) == kept_bytes and read_shape(shapes / f"{kept}.h5").name == "kept"
        ids = {s.id for s in client.shapes()}
        assert {kept, orphan} <= ids and not list(shapes.glob(".*.tmp"))
        failed = client.job(slow.id)
        assert failed.state == "failed" and failed.error == INTERRUPTED and failed.finished
        resumed = client.wait(waiting.id, timeout=120)
        assert resumed.state == "succeeded" and len(resumed.shape_ids) == 1
        assert client.job(done.id).state == "succeeded"
        running = client.start_fit(
            [client.upload_mesh(box_mesh.vertices, box_mesh.faces, name="slow").id], settings=SLOW_FIT, resolution=32
        )
        _wait_until(lambda: client.job(running.id).stage.startswith("fitting"))
        assert server.terminate(sig=signal.SIGINT) == 0  # Ctrl-C: clean exit, the running job ends as interrupted
        assert not (data / "service.json").exists()
    finally:
        server.stop()
    db = Database(data / "index.sqlite3")
    assert db.one("SELECT state, error FROM jobs WHERE id = ?", (running.id,)) == {
        "state": "failed",
        "error": INTERRUPTED,
    }
    db.close()


def test_sigterm_while_idle(tmp_path):
    server = ServerProcess(tmp_path / "data")
    try:
        assert server.client.health().status == "ok"
        assert server.terminate() == 0
    finally:
        server.stop()


def test_library_recovery_drops_rows_without_files_and_quarantines_damaged_files(tmp_path, box_mesh):
    from backend.fitting.batched import FitResult
    from backend.fitting.pipeline import fitted_shape
    from backend.meshes.loading import normalise_mesh
    from backend.shapes.architecture import random_family

    db = Database(tmp_path / "index.sqlite3")
    library = Library(db=db, shapes_dir=tmp_path / "shapes")
    family = random_family()
    mesh = normalise_mesh(box_mesh.vertices, box_mesh.faces, name="box")
    result = FitResult(
        weights=family.initial_weights, steps=1, fit_seconds=0.1, final_loss=0.5, surface_error_estimate=0.1
    )
    shape = fitted_shape(mesh, result, family, source_name="box.obj")
    shape.metrics.update(surface_error=0.1, chamfer=float("inf"), fscore=0.0)
    first, second = library.add(shape), library.add(shape)
    assert first["metrics"]["chamfer"] is None  # JSON has no infinity
    (tmp_path / "shapes" / f"{first['id']}.h5").unlink()
    (tmp_path / "shapes" / f"{'c' * 32}.h5").write_bytes(b"not hdf5")
    report = library.recover()
    assert report.dropped_rows == [first["id"]] and report.quarantined == [f"{'c' * 32}.h5"]
    assert [s["id"] for s in library.list()[0]] == [second["id"]]
    assert (tmp_path / "quarantine" / f"{'c' * 32}.h5").exists()
    db.close()


def test_job_pool_records_every_outcome(tmp_path):
    release = threading.Event()

    def succeed(context: JobContext) -> dict:
        context.progress(0.5, "half way")
        context.add_output("items", 1)
        return {"answer": 42}

    def crash(context: JobContext) -> dict:
        raise ZeroDivisionError("boom")

    def refuse(context: JobContext) -> dict:
        raise NeuralShapesError("input.obj: mesh is empty")

    def block(context: JobContext) -> dict:
        context.add_output("items", "partial")
        while not release.is_set():
            check_cancel(context.cancel, "job cancelled")
            time.sleep(0.01)
        return {}

    kinds = [JobKind("succeed", succeed), JobKind("crash", crash), JobKind("refuse", refuse), JobKind("block", block)]
    db = Database(tmp_path / "index.sqlite3")
    jobs = JobManager(db=db, kinds=kinds, workers=2, max_pending=3)
    jobs.start()
    ok = jobs.submit("succeed", {})
    _wait_until(lambda: jobs.get(ok["id"])["state"] == "succeeded")
    assert jobs.get(ok["id"])["outputs"] == {"items": [1], "answer": 42} and jobs.get(ok["id"])["progress"] == 1.0
    crashed, refused = jobs.submit("crash", {}), jobs.submit("refuse", {})
    _wait_until(lambda: jobs.get(crashed["id"])["state"] == jobs.get(refused["id"])["state"] == "failed")
    assert jobs.get(crashed["id"])["error"] == "internal error: ZeroDivisionError: boom"
    assert jobs.get(refused["id"])["error"] == "input.obj: mesh is empty"
    with pytest.raises(NeuralShapesError, match="unknown job kind"):
        jobs.submit("nf2vec", {})

    blocked = [jobs.submit("block", {}) for _ in range(3)]  # two run, one waits
    with pytest.raises(NeuralShapesError, match="limit is 3"):
        jobs.submit("block", {})
    _wait_until(lambda: sum(jobs.get(j["id"])["state"] == "running" for j in blocked) == 2)
    jobs.shutdown()  # a stop: running jobs end failed as interrupted, the queued one stays queued
    states = sorted(jobs.get(j["id"])["state"] for j in blocked)
    assert states == ["failed", "failed", "queued"]
    interrupted = [jobs.get(j["id"]) for j in blocked if jobs.get(j["id"])["state"] == "failed"]
    assert all(j["error"] == INTERRUPTED and j["outputs"] == {"items": ["partial"]} for j in interrupted)

    restarted = JobManager(db=db, kinds=kinds, workers=1)
    assert restarted.start() == {"interrupted": 0, "resumed": 1}
    release.set()
    queued = next(j for j in blocked if jobs.get(j["id"])["state"] != "failed")
    _wait_until(lambda: restarted.get(queued["id"])["state"] == "succeeded")
    restarted.shutdown()
    db.close()
