"""Collection conversion (``neural-shapes convert``): sources, the manifest, a 60-mesh collection with broken
files converted, re-run, killed and resumed, and the command line with its report."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from backend.datasets.procedural import make_collection
from backend.errors import NeuralShapesError
from backend.fitting.batched import FitSettings
from backend.library.conversion import CollectionSettings, convert_collection
from backend.library.executors import InProcess, LocalPool, _core_shares
from backend.library.manifest import Manifest, ManifestLock
from backend.library.report import collection_report
from backend.library.sources import expand_sources
from backend.shapes.family_file import resolve_family
from backend.shapes.shape_file import read_shape
from tests.conftest import ROOT, run_cli

# Few samples and steps and a coarse check grid: the conversion machinery is tested here, not the fit.
TINY_FIT = FitSettings(samples=20_000, max_steps=20, eval_every=10, eval_points=2_000)
TINY_CLI = ("--samples", "20000", "--max-steps", "20", "--resolution", "32")
BROKEN = {
    "garbage.obj": b"this is not a mesh\n",
    "empty.stl": b"",
    "nan_vertices.obj": b"v 0 0 0\nv 1 0 nan\nv 0 1 0\nf 1 2 3\n",
    "out_of_range.obj": b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n",
}


def tiny_settings(**changes) -> CollectionSettings:
    return CollectionSettings(family=resolve_family("default"), fit=TINY_FIT, resolution=32, **changes)


def write_test_collection(folder: Path) -> Path:
    """60 mesh files in ``folder``: 56 generated meshes (some messy) and the 4 broken files of BROKEN."""
    make_collection(folder, 56, seed=3)
    (folder / "manifest.json").unlink()
    for name, data in BROKEN.items():
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    return write_test_collection(tmp_path_factory.mktemp("collection"))


def good_stems(folder: Path) -> set[str]:
    return {p.stem for p in folder.glob("*.ply")}


def outputs(dest: Path) -> set[str]:
    return {p.stem for p in dest.glob("*.h5")}


def states(dest: Path) -> dict[str, str]:
    manifest = Manifest(dest)
    try:
        return {Path(row["source"]).name: row["state"] for row in manifest.rows()}
    finally:
        manifest.close()


# --- sources and manifest (no fitting) ------------------------------------------------------------------


def test_sources_come_from_folders_globs_and_lists(tmp_path):
    (tmp_path / "lib" / "sub").mkdir(parents=True)
    for name in ("lib/a.obj", "lib/sub/b.PLY", "lib/sub/notes.md", "c.stl"):
        (tmp_path / name).write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_text("# assets\nc.stl\n\nlib/sub\n")
    assert expand_sources([tmp_path / "lib"]) == [tmp_path / "lib/a.obj", tmp_path / "lib/sub/b.PLY"]
    assert expand_sources([f"{tmp_path}/**/*.obj"]) == [tmp_path / "lib/a.obj"]
    assert expand_sources([listing, tmp_path / "c.stl"]) == [tmp_path / "c.stl", tmp_path / "lib/sub/b.PLY"]
    with pytest.raises(NeuralShapesError, match="no such file or folder"):
        expand_sources([tmp_path / "missing"])
    with pytest.raises(NeuralShapesError, match="no mesh files match"):
        expand_sources([f"{tmp_path}/*.glb"])
    listing.write_text("list.txt\n")
    with pytest.raises(NeuralShapesError, match="includes itself"):
        expand_sources([listing])


def test_manifest_keys_rows_by_content(tmp_path):
    """A renamed file is the same row, a changed file a new one with the old output name, duplicates one
    row; failed rows are retried until their attempts run out, never when permanent."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    for name, data in (("a.obj", b"aaa"), ("b.obj", b"bbb"), ("b_copy.obj", b"bbb"), ("c.obj", b"ccc")):
        (src / name).write_bytes(data)
    manifest = Manifest(dest)
    registered = manifest.register(sorted(src.iterdir()), max_attempts=2)
    assert [item.stem for item in registered.todo] == ["a", "b", "c"]  # the duplicate is one row
    a, b, c = registered.todo
    manifest.mark_running([a, b, c], "test")
    from backend.library.manifest import ItemRecord

    manifest.record(
        [
            ItemRecord(a.sha256, "done", output_bytes=10, metrics={"surface_error": 0.001}),
            ItemRecord(b.sha256, "failed", error="b: transient"),
            ItemRecord(c.sha256, "failed", error="c: not a mesh", permanent=True),
        ]
    )
    (src / "a.obj").rename(src / "a_renamed.obj")
    (src / "b_copy.obj").unlink()
    again = manifest.register(sorted(src.iterdir()), max_attempts=2)
    assert [item.stem for item in again.todo] == ["b"] and (again.done, again.failed) == (1, 1)
    assert {row["source"] for row in manifest.rows("done")} == {str(src / "a_renamed.obj")}
    manifest.mark_running(again.todo, "test")
    manifest.record([ItemRecord(b.sha256, "failed", error="b: transient")])
    assert manifest.register(sorted(src.iterdir()), max_attempts=2).todo == []  # out of attempts
    retried = manifest.register(sorted(src.iterdir()), max_attempts=2, retry_failed=True).todo
    assert sorted(item.stem for item in retried) == ["b", "c"]
    time.sleep(0.01)
    (src / "a_renamed.obj").write_bytes(b"new content")
    changed = manifest.register([src / "a_renamed.obj"], max_attempts=2).todo
    assert [item.stem for item in changed] == ["a"]  # takes over the old row's output name
    assert manifest.counts()["replaced"] == 1
    manifest.mark_running(changed, "test")
    assert manifest.recover_interrupted() == 1  # what a killed run left running goes back to pending
    time.sleep(0.01)
    (src / "a_renamed.obj").write_bytes(b"aaa")  # changed back: the old bytes' row comes back under its name
    back = manifest.register([src / "a_renamed.obj"], max_attempts=2).todo
    assert [(item.sha256, item.stem) for item in back] == [(a.sha256, "a")] and manifest.counts()["replaced"] == 1
    manifest.close()


def test_one_run_per_destination(tmp_path):
    with ManifestLock(tmp_path):
        with pytest.raises(NeuralShapesError, match="another conversion is using this folder"):
            with ManifestLock(tmp_path):
                pass
    with ManifestLock(tmp_path):  # released when the first run ends
        pass


def test_damaged_manifest_is_a_clear_error(tmp_path):
    (tmp_path / "manifest.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(NeuralShapesError, match="cannot open the manifest"):
        Manifest(tmp_path)


def test_pool_processes_get_their_own_cores():
    shares = _core_shares(2, [])
    cores = [share[0] for share in shares]
    if len(os.sched_getaffinity(0)) >= 2:
        assert cores[0] and cores[1] and not cores[0] & cores[1]
    assert _core_shares(2, ["cuda:0", "cuda:1"])[1][1] == "cuda:1"


# --- converting a collection ----------------------------------------------------------------------------


@pytest.mark.slow
def test_collection_converts_reruns_and_reports(collection, tmp_path):
    dest = tmp_path / "shapes"
    summary = convert_collection(expand_sources([collection]), dest, tiny_settings(), LocalPool(1))
    assert (summary.progress.converted, summary.progress.failed) == (56, 4)
    assert outputs(dest) == good_stems(collection)
    assert {name for name, state in states(dest).items() if state == "failed"} == set(BROKEN)
    manifest = Manifest(dest)
    reasons = {Path(row["source"]).name: (row["error"], row["permanent"]) for row in manifest.rows("failed")}
    assert "mesh is empty" in reasons["garbage.obj"][0] and all(permanent for _, permanent in reasons.values())
    assert "nan_vertices.obj" in reasons["nan_vertices.obj"][0]
    report = collection_report(manifest)
    manifest.close()
    assert report.counts["done"] == 56 and sum(report.surface_error_counts) == 56
    assert report.source_bytes > report.output_bytes > 56 * 30_000 and report.compression > 1
    assert len(report.failed) == 4
    shape = read_shape(dest / f"{sorted(good_stems(collection))[0]}.h5")
    assert shape.metrics["steps"] <= 20 and np.isfinite(shape.metrics["surface_error"])

    before = {p.name: p.stat().st_mtime_ns for p in dest.glob("*.h5")}
    rerun = convert_collection(expand_sources([collection]), dest, tiny_settings(), InProcess())
    assert (rerun.progress.total, rerun.already_done, rerun.not_retried) == (0, 56, 4)
    assert {p.name: p.stat().st_mtime_ns for p in dest.glob("*.h5")} == before  # nothing redone


_KILLABLE_DRIVER = """
import sys
from pathlib import Path
from backend.library.conversion import convert_collection
from backend.library.executors import InProcess
from backend.library.sources import expand_sources
from tests.test_library import tiny_settings
convert_collection(expand_sources([sys.argv[1]]), Path(sys.argv[2]), tiny_settings(batch_size=8), InProcess())
"""


@pytest.mark.slow
def test_a_killed_run_resumes_with_no_duplicate_or_missing_output(collection, tmp_path):
    dest = tmp_path / "shapes"
    driver = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE_DRIVER, str(collection), str(dest)], cwd=ROOT, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.5)
            if (dest / "manifest.sqlite").exists() and _done_rows(dest) >= 8:
                break
        assert driver.poll() is None, "the driver finished before it could be killed"
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.wait()
    killed_states = states(dest)
    assert "running" in killed_states.values() and "done" in killed_states.values()

    summary = convert_collection(expand_sources([collection]), dest, tiny_settings(), InProcess())
    assert summary.recovered > 0 and summary.already_done >= 8
    assert outputs(dest) == good_stems(collection)  # none missing, none twice under another name
    assert not list(dest.glob(".*.tmp"))
    assert sorted(states(dest).values()) == ["done"] * 56 + ["failed"] * 4
    for path in dest.glob("*.h5"):
        read_shape(path)  # every output whole


def _done_rows(dest: Path) -> int:
    try:
        with sqlite3.connect(f"file:{dest / 'manifest.sqlite'}?mode=ro", uri=True) as db:
            return db.execute("SELECT COUNT(*) FROM items WHERE state = 'done'").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


@pytest.mark.slow
def test_convert_command_reports_and_draws_the_histogram(collection, tmp_path):
    src = tmp_path / "few"
    src.mkdir()
    for path in sorted(collection.glob("*.ply"))[:3] + [collection / "garbage.obj"]:
        (src / path.name).write_bytes(path.read_bytes())
    dest, png = tmp_path / "shapes", tmp_path / "histogram.png"
    result = run_cli("convert", src, "-o", dest, *TINY_CLI, "--meshes", "--json", "--histogram", png)
    assert result.returncode == 1, result.stderr  # a source failed
    report = json.loads(result.stdout)
    assert report["run"]["converted"] == 3 and report["run"]["failed"] == 1
    assert report["collection"]["counts"]["done"] == 3 and sum(report["collection"]["surface_error_counts"]) == 3
    assert report["collection"]["failed"][0]["source"].endswith("garbage.obj")
    assert len(list(dest.glob("*.obj"))) == 3 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = run_cli("convert", src, "-o", dest, *TINY_CLI)
    assert again.returncode == 0, again.stderr
    assert "0 converted" in again.stdout and "3 already done" in again.stdout and "3 / 1 / 0" in again.stdout


@pytest.mark.slow
def test_an_interrupted_run_stops_its_workers_and_leaves_its_items_pending(collection, tmp_path):
    """Ctrl+C (SIGINT to the driver alone): the pool's running batch is stopped, not waited for; its items
    are pending again, and a re-run converts them."""
    src = tmp_path / "src"
    src.mkdir()
    for path in sorted(collection.glob("*.ply"))[:4]:
        (src / path.name).write_bytes(path.read_bytes())
    dest = tmp_path / "shapes"
    command = [Path(sys.executable).with_name("neural-shapes"), "convert", src, "-o", dest, "--workers", "1"]
    driver = subprocess.Popen(
        [*map(str, command), "--samples", "20000", "--max-steps", "20000"], stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while "running" not in (states(dest).values() if (dest / "manifest.sqlite").exists() else ()):
        assert driver.poll() is None and time.monotonic() < deadline, "no batch started"
        time.sleep(0.2)
    time.sleep(1)  # the pool process has the batch (a fit of these 4 can end within 3 s of it starting)
    interrupted = time.monotonic()
    driver.send_signal(signal.SIGINT)
    driver.wait(timeout=60)
    assert time.monotonic() - interrupted < 20  # a 20,000-step batch was not waited for
    assert set(states(dest).values()) == {"pending"} and not list(dest.glob("*.h5"))
    summary = convert_collection(expand_sources([src]), dest, tiny_settings(), InProcess())
    assert summary.progress.converted == 4 and outputs(dest) == good_stems(src)


def test_a_ray_address_where_nothing_listens_is_one_line_at_once():
    pytest.importorskip("ray")
    from backend.library.executors import RayCluster

    started = time.monotonic()
    with pytest.raises(NeuralShapesError, match="no Ray cluster answers at 127.0.0.1:1"):
        RayCluster("127.0.0.1:1")
    assert time.monotonic() - started < 10
