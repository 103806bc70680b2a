"""Kill-9 loop: SIGKILL the real service at random moments, restart it, check what it recovered.

    .venv/bin/python bench/bench_kill9.py [--kills 100] [--seed 0]

Each round starts ``neural-shapes serve --port 0`` on one data folder, checks the folder (below), then
drives quick fits, mesh uploads, ``.h5`` imports and deletes from four client threads and SIGKILLs the
service after a seeded random delay; one round in ten kills it during start-up instead, i.e. while it
recovers from the previous kill. After every restart:

- ``PRAGMA integrity_check`` is ok;
- every shape row's file exists, has the recorded size and loads; every ``.h5`` in ``shapes/`` has a
  row and loads; every upload row's file loads ("orphans" count the exceptions);
- every shape the API confirmed (an import's 201, a job's outputs) is still there, unless a confirmed
  delete removed it ("lost");
- every job that was queued or running at the kill either failed with a reason or runs again
  (started after the restart); none still "running" from before ("stuck");
- no temporary file of a dead process is left; ``service.json`` names the new process.

Prints a table by what was happening at the kill, and the start-up time of the service.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.service.db import utc_now
from blender_addon.client import ServiceError
from tests.service_server import ServerProcess

# Fits that finish in about a second on one CPU thread (tiny network, few steps, coarse metrics).
FIT = {
    "samples": 5000,
    "max_steps": 30,
    "target_surface_error": 0.05,
    "batch_size": 512,
    "eval_every": 10,
    "eval_points": 1000,
}
FIT_OPTIONS = {"architecture": {"hidden_layers": 2, "width": 16}, "family": "random:1", "resolution": 16}
STARTUP_KILL_SHARE = 0.1
FINAL = ("succeeded", "failed", "cancelled")
MOMENTS = (
    "start-up (recovering)",
    ".h5 being written",
    "upload request",
    "import request",
    "delete request",
    "fit job running",
    "idle",
)


@dataclass
class Ledger:
    """What the API confirmed, as the clients saw it (shared by the client threads)."""

    confirmed: set[str] = field(default_factory=set)  # shapes the API said exist
    deleting: set[str] = field(default_factory=set)  # delete sent, answer not seen
    deleted: set[str] = field(default_factory=set)  # deletes sent (a job's outputs still list them)
    jobs: dict[str, str] = field(default_factory=dict)  # job id -> last state seen
    in_flight: Counter = field(default_factory=Counter)  # request kind -> requests under way
    api_errors: list[str] = field(default_factory=list)  # answers other than success or "cannot reach"
    staged: list[str] = field(default_factory=list)  # sphere uploads, oldest first
    storing: bool = False  # a job was seen evaluating and storing its shapes (this round)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Tally:
    """Per moment of the kill: counts of kills and of what the next restart found."""

    kills: int = 0
    integrity: int = 0
    lost: int = 0
    orphans: int = 0
    temp_left: int = 0
    rerun: int = 0
    failed: int = 0
    stuck: int = 0


class Workload:
    """Four client threads against one running service until :meth:`stop` (or the service dies)."""

    def __init__(self, server: ServerProcess, ledger: Ledger, h5: bytes, seed: int):
        self.client, self.ledger, self.h5 = server.client, ledger, h5
        self.rng = random.Random(seed)
        self.box = trimesh.creation.box(extents=(1.0, 0.6, 0.8))
        self.sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.5)
        self.done = threading.Event()
        self.threads = [
            threading.Thread(target=self._guard, args=(fn,), daemon=True)
            for fn in (self._fit, self._upload, self._import, self._delete)
        ]
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join(60)

    def _guard(self, loop) -> None:
        try:
            while not self.done.is_set():
                loop()
        except ServiceError as error:
            if error.status:  # 0: the service is gone (killed), the expected end
                with self.ledger.lock:
                    self.ledger.api_errors.append(str(error))

    def _call(self, kind: str, fn, *args, **kwargs):
        with self.ledger.lock:
            self.ledger.in_flight[kind] += 1
        try:
            return fn(*args, **kwargs)
        finally:
            with self.ledger.lock:
                self.ledger.in_flight[kind] -= 1

    def _fit(self) -> None:
        ids = []
        for _ in range(self.rng.choice((1, 2))):  # two: the second one waits queued (one worker)
            upload = self._call("upload", self.client.upload_mesh, self.box.vertices, self.box.faces, name="box")
            job = self.client.start_fit([upload.id], settings=FIT, **FIT_OPTIONS)
            with self.ledger.lock:
                self.ledger.jobs[job.id] = job.state
            ids.append(job.id)
        for job_id in ids:
            while not self.done.is_set():
                job = self.client.job(job_id)
                self._saw(job)
                if job.done:
                    break
                time.sleep(0.05)

    def _saw(self, job) -> None:
        with self.ledger.lock:
            self.ledger.jobs[job.id] = job.state
            self.ledger.storing |= job.stage.startswith("evaluating and storing")
            self.ledger.confirmed.update(set(job.shape_ids) - self.ledger.deleted)

    def _upload(self) -> None:
        time.sleep(self.rng.uniform(0.0, 0.5))  # leaves moments with no upload under way
        upload = self._call("upload", self.client.upload_mesh, self.sphere.vertices, self.sphere.faces, name="sphere")
        with self.ledger.lock:
            self.ledger.staged.append(upload.id)
            oldest = self.ledger.staged.pop(0) if len(self.ledger.staged) > 10 else None
        if oldest:  # keeps the folder small, and kills land in upload deletes too
            self._call("delete", self.client.request, "DELETE", f"/v1/uploads/{oldest}")

    def _import(self) -> None:
        shape = self._call("import", self.client.import_shape, self.h5, name="imported")
        with self.ledger.lock:
            self.ledger.confirmed.add(shape.id)

    def _delete(self) -> None:
        with self.ledger.lock:
            pick = sorted(self.ledger.confirmed - self.ledger.deleting)
        if len(pick) < 30:  # keeps the library near 30 shapes, so every check reads about as much
            time.sleep(0.1)
            return
        with self.ledger.lock:
            shape_id = self.rng.choice(pick)
            self.ledger.deleting.add(shape_id)
            self.ledger.deleted.add(shape_id)
        self._call("delete", self.client.delete_shape, shape_id)
        with self.ledger.lock:
            self.ledger.confirmed.discard(shape_id)
            self.ledger.deleting.discard(shape_id)


def make_h5() -> bytes:
    """A valid small neural shape file to import (random weights of the bench's fit network)."""
    from backend.fitting.batched import FitResult
    from backend.fitting.pipeline import fitted_shape
    from backend.meshes.loading import normalise_mesh
    from backend.shapes.architecture import Architecture, random_family
    from backend.shapes.shape_file import shape_to_bytes

    box = trimesh.creation.box(extents=(1.0, 0.6, 0.8))
    family = random_family(Architecture(hidden_layers=2, width=16), 1)
    mesh = normalise_mesh(box.vertices, box.faces, name="box")
    result = FitResult(
        weights=family.initial_weights, steps=1, fit_seconds=0.1, final_loss=0.5, surface_error_estimate=0.1
    )
    shape = fitted_shape(mesh, result, family, source_name="box.obj")
    shape.metrics.update(surface_error=0.1, chamfer=0.1, fscore=0.5)
    return shape_to_bytes(shape)


def temporary_files(data: Path, live_pid: int) -> list[Path]:
    """Temporary files of dead processes (a live service's own writes are named with its pid)."""
    folders = (data, data / "shapes", data / "uploads")
    return [path for folder in folders for path in folder.glob(".*.tmp") if f".{live_pid}." not in path.name]


def check(server: ServerProcess, ledger: Ledger, restarted: str, tally: Tally) -> list[str]:
    """Check the data folder of a freshly restarted service (see the module docstring); adds to ``tally``
    and returns one line per problem."""
    data, problems = server.data_dir, []
    pid = server.process.pid
    if server.client.health().status != "ok" or f'"pid": {pid}' not in (data / "service.json").read_text():
        problems.append("service.json does not name the new process")
    leftovers = temporary_files(data, pid)
    tally.temp_left += len(leftovers)
    problems += [f"temporary file left: {p.name}" for p in leftovers]

    files = {p.name for p in (data / "shapes").glob("*.h5")}  # listed before the rows: a job may add both meanwhile
    verdict, rows, uploads, jobs = _read_index(data)
    if verdict != [("ok",)]:
        tally.integrity += 1
        problems.append(f"integrity_check: {verdict[:3]}")
    suspects = _orphans(data, files, rows, uploads)
    if suspects:  # a resumed job may be between its file and its row: look again once it moved on
        time.sleep(1.0)
        verdict, rows, uploads, jobs = _read_index(data)
        suspects = _orphans(data, {p.name for p in (data / "shapes").glob("*.h5")}, rows, uploads)
    tally.orphans += len(suspects)
    problems += suspects

    with ledger.lock:
        gone = ledger.confirmed - set(rows)
        lost = gone - ledger.deleting  # a delete whose answer the kill cut off may have gone through
        ledger.confirmed -= gone
        ledger.deleting.clear()
        tally.lost += len(lost)
        problems += [f"confirmed shape lost: {shape_id}" for shape_id in sorted(lost)]
        for job_id, seen in list(ledger.jobs.items()):
            if seen in FINAL:
                continue
            if job_id not in jobs:
                tally.lost += 1
                problems.append(f"job {job_id} lost")
                continue
            state, error, started, finished = jobs[job_id]
            ledger.jobs[job_id] = state
            if state == "running" and (started or "") < restarted:
                tally.stuck += 1
                problems.append(f"job {job_id} still running from before the kill")
            elif state == "queued" or (started or "") >= restarted:
                tally.rerun += 1
            elif state == "failed":
                tally.failed += 1
                if not error:
                    problems.append(f"job {job_id} failed without a reason")
            # else: it succeeded before the kill, after the client's last look
    return problems


def _read_index(data: Path) -> tuple[list, dict, list, dict]:
    """(integrity_check rows, shapes {id: (file, size)}, uploads [(id, file)], jobs {id: (state, error, started, finished)})."""
    db = sqlite3.connect(data / "index.sqlite3", timeout=30)
    try:
        verdict = db.execute("PRAGMA integrity_check").fetchall()
        rows = {r[0]: (r[1], r[2]) for r in db.execute("SELECT id, file, size_bytes FROM shapes")}
        uploads = db.execute("SELECT id, file FROM uploads").fetchall()
        jobs = {r[0]: r[1:] for r in db.execute("SELECT id, state, error, started, finished FROM jobs")}
    finally:
        db.close()
    return verdict, rows, uploads, jobs


def _orphans(data: Path, files: set[str], rows: dict, uploads: list) -> list[str]:
    """Rows whose file is missing, of another size or does not load; .h5 files without a row."""
    from backend.errors import NeuralShapesError
    from backend.shapes.shape_file import read_shape

    found = []
    for shape_id, (name, size) in rows.items():
        path = data / "shapes" / name
        try:
            if path.stat().st_size != size:
                raise NeuralShapesError(f"{path.stat().st_size} bytes, the row says {size}")
            read_shape(path)
        except (OSError, NeuralShapesError) as error:
            found.append(f"row {shape_id} -> {name}: {error}")
    indexed = {name for name, _ in rows.values()}
    found += [f"file without a row: shapes/{name}" for name in sorted(files - indexed)]
    for upload_id, name in uploads:
        try:
            with np.load(data / "uploads" / name, allow_pickle=False) as f:
                f["vertices"], f["faces"]
        except (OSError, ValueError, KeyError) as error:
            found.append(f"upload row {upload_id} -> {name}: {type(error).__name__}: {error}")
    return found


@dataclass
class Result:
    """A whole loop: tallies per moment of the kill, start-up seconds, problems found, API errors."""

    tallies: dict[str, Tally]
    startups: list[float]
    problems: list[str]
    api_errors: list[str]
    seconds: float
    confirmed: int


def kill_during_startup(data: Path, delay: float) -> None:
    """Start the service and SIGKILL it ``delay`` s after it took the folder's lock (it is then
    removing leftovers, opening the index, recovering the library and the jobs)."""
    lock = data / "service.lock"
    before = lock.read_text().strip() if lock.exists() else ""
    started: list[ServerProcess] = []

    def start() -> None:
        try:
            started.append(ServerProcess(data))
        except RuntimeError:  # killed before it announced itself: the expected outcome
            pass

    thread = threading.Thread(target=start, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while thread.is_alive() and time.monotonic() < deadline:
        text = lock.read_text().strip() if lock.exists() else ""
        if text.isdigit() and text != before:
            time.sleep(delay)
            os.kill(int(text), signal.SIGKILL)
            break
        time.sleep(0.005)
    thread.join(120)
    for server in started:  # it announced itself before the kill landed
        server.kill()


def wait_for_moment(ledger: Ledger, rng: random.Random) -> None:
    """Return at a random moment to kill: after a random delay (most rounds), or a few milliseconds
    into a request that writes files or into a job storing its shapes (the short windows around the
    .h5 writes that a plain timer rarely hits)."""
    aim = rng.choices(("timer", "request", "storing"), weights=(0.6, 0.25, 0.15))[0]
    with ledger.lock:
        ledger.storing = False
    deadline = time.monotonic() + (rng.uniform(0.3, 3.0) if rng.random() < 0.8 else rng.uniform(3.0, 8.0))
    while time.monotonic() < deadline or (aim != "timer" and time.monotonic() < deadline + 10):
        with ledger.lock:
            hit = (aim == "request" and (ledger.in_flight["import"] or ledger.in_flight["upload"])) or (
                aim == "storing" and ledger.storing
            )
        if hit:
            time.sleep(rng.uniform(0.0, 0.05))
            return
        time.sleep(0.002)


def kill(server: ServerProcess, ledger: Ledger) -> str:
    """SIGKILL the service; returns what it was doing: a shape file half written (its temporary file
    is left), else the requests under way and whether a fit job ran, as the clients saw them just
    before the kill (they see the dead connection at once)."""
    with ledger.lock:
        busy = {kind for kind, count in ledger.in_flight.items() if count > 0}
        fitting = "running" in ledger.jobs.values()
        server.process.send_signal(signal.SIGKILL)
    server.kill()  # waits, closes its log
    if list((server.data_dir / "shapes").glob(".*.tmp")):
        return ".h5 being written"
    for kind in ("upload", "import", "delete"):
        if kind in busy:
            return f"{kind} request"
    return "fit job running" if fitting else "idle"


def run_loop(data: Path, *, kills: int, seed: int, report=print) -> Result:
    """``kills`` SIGKILLs of a service on ``data``, a check after every restart, then a clean stop."""
    rng = random.Random(seed)
    h5, ledger = make_h5(), Ledger()
    tallies = {moment: Tally() for moment in MOMENTS}
    startups, problems = [], []
    began = time.monotonic()
    killed, last, server = 0, None, None
    try:
        while True:
            restarted = utc_now()
            if 0 < killed < kills and rng.random() < STARTUP_KILL_SHARE:
                kill_during_startup(data, rng.uniform(0.0, 0.8))
                killed, last = killed + 1, MOMENTS[0]
                tallies[last].kills += 1
                continue
            clock = time.monotonic()
            server = ServerProcess(data)
            startups.append(time.monotonic() - clock)
            # counts go to the last kill before this restart
            found = check(server, ledger, restarted, tallies[last] if last else Tally())
            problems += [f"after kill {killed} ({last}): {line}" for line in found]
            if killed == kills:
                break
            work = Workload(server, ledger, h5, rng.randrange(2**32))
            wait_for_moment(ledger, rng)
            last = kill(server, ledger)
            work.stop()
            killed += 1
            tallies[last].kills += 1
            if killed % 10 == 0:
                report(f"{killed} kills, {time.monotonic() - began:.0f} s, {len(problems)} problems")

        # the end: every job that is still pending finishes, and a clean stop leaves no service.json
        with ledger.lock:
            pending = [job_id for job_id, state in ledger.jobs.items() if state not in FINAL]
        for job_id in pending:
            try:
                job = server.client.wait(job_id, timeout=120, poll=0.1)
            except ServiceError as error:
                problems.append(f"job {job_id} did not finish after the last restart: {error}")
                continue
            if job.state == "failed" and not job.error:
                problems.append(f"job {job_id} failed without a reason")
        if server.terminate() != 0 or (data / "service.json").exists():
            problems.append("the clean stop at the end did not exit 0 or left service.json")
    finally:
        if server is not None:
            server.stop()  # no-op when it already ended
    return Result(tallies, startups, problems, ledger.api_errors, time.monotonic() - began, len(ledger.confirmed))


def print_result(result: Result) -> None:
    from report import table

    columns = ("kills", "integrity", "lost", "orphans", "temp_left", "rerun", "failed", "stuck")
    rows, total = [], Tally()
    for moment, tally in result.tallies.items():
        rows.append([moment, *(getattr(tally, c) for c in columns)])
        for c in columns:
            setattr(total, c, getattr(total, c) + getattr(tally, c))
    rows.append(["**all**", *(getattr(total, c) for c in columns)])
    header = [
        "moment of the kill",
        "kills",
        "integrity_check failures",
        "lost shapes",
        "orphans",
        "temp files left",
        "jobs re-run",
        "jobs failed (reason)",
        "jobs stuck",
    ]
    table(
        f"Kill-9 loop: {total.kills} SIGKILLs, {len(result.startups)} restarts, {result.seconds / 60:.1f} min",
        header,
        rows,
    )
    starts = sorted(result.startups)
    print(
        f"\nstart-up (process start to 'listening on'): median {statistics.median(starts):.2f} s, "
        f"90th percentile {starts[int(0.9 * (len(starts) - 1))]:.2f} s, max {starts[-1]:.2f} s"
    )
    print(f"shapes confirmed by the API and still in the library at the end: {result.confirmed}")
    print(f"problems: {len(result.problems)}; API errors other than 'cannot reach': {len(result.api_errors)}")
    for line in [*result.problems, *result.api_errors][:20]:
        print("  " + line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kill9-") as folder:
        result = run_loop(
            Path(folder) / "data",
            kills=args.kills,
            seed=args.seed,
            report=lambda line: print(line, file=sys.stderr, flush=True),
        )
    print_result(result)
    sys.exit(1 if result.problems or result.api_errors else 0)


if __name__ == "__main__":
    main()
