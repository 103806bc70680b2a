"""Jobs: slow work (fitting now, nf2vec later) run outside the request path.

A *job kind* is a name and a runner function ``run(context) -> outputs``; :class:`JobManager` keeps
one row per job in SQLite and runs jobs on a bounded thread pool (``workers`` at once, at most
``max_pending`` queued + running). A runner reports ``context.progress(fraction, stage)``, raises
:class:`backend.errors.Cancelled` once ``context.cancel`` is set (:func:`backend.errors.check_cancel`,
or code that takes the event) and may record outputs as it goes with ``context.add_output`` so a
crash keeps what was finished.

States: queued -> running -> succeeded | failed | cancelled (queued -> cancelled directly).
After a crash or a stop, jobs that were *running* are marked failed with the reason (their finished
outputs stay), or cancelled if a cancel had been asked for; jobs still *queued* run again: they had
not started, and their inputs are on disk. Both happen in one statement each, so a kill during the
recovery itself leaves every job in a state the next start handles the same way.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from backend.errors import Cancelled, NeuralShapesError
from backend.service.db import Database, to_json, utc_now
from backend.service.errors import Busy, Conflict, NotFound, check_id, new_id

log = logging.getLogger(__name__)

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED = ("succeeded", "failed", "cancelled")
INTERRUPTED = (
    "interrupted: the service stopped while this job ran; finished outputs are kept, submit it again for the rest"
)
PROGRESS_INTERVAL = 0.25  # seconds between progress writes (stage changes are written at once)


@dataclass
class JobContext:
    """What a runner gets: its inputs, a cancel event, progress / output reporting."""

    job_id: str
    inputs: dict[str, Any]
    cancel: threading.Event
    _manager: JobManager
    _last_write: float = 0.0
    _last_stage: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)

    def progress(self, fraction: float, stage: str) -> None:
        """Report progress in [0, 1] and a one-line stage text (written at most every 0.25 s)."""
        now = time.monotonic()
        if stage == self._last_stage and now - self._last_write < PROGRESS_INTERVAL:
            return
        self._last_write, self._last_stage = now, stage
        fraction = min(max(float(fraction), 0.0), 1.0)
        self._manager.db.execute(
            "UPDATE jobs SET progress = ?, stage = ? WHERE id = ?", (fraction, stage[:500], self.job_id)
        )

    def add_output(self, key: str, value: Any) -> None:
        """Append ``value`` to the list ``outputs[key]`` and store it now (kept if the job dies later)."""
        self.outputs.setdefault(key, []).append(value)
        self._manager.db.execute("UPDATE jobs SET outputs = ? WHERE id = ?", (to_json(self.outputs), self.job_id))


Runner = Callable[[JobContext], dict[str, Any]]


@dataclass(frozen=True)
class JobKind:
    """A kind of job: its runner, and the upload ids its inputs refer to (kept while it is pending)."""

    name: str
    run: Runner
    uploads: Callable[[dict[str, Any]], list[str]] = lambda inputs: list(inputs.get("uploads", []))


def _public(row: dict) -> dict:
    return {
        "id": row["id"],
        "kind": row["kind"],
        "state": row["state"],
        "progress": row["progress"],
        "stage": row["stage"],
        "error": row["error"],
        "cancel_requested": bool(row["cancel_requested"]),
        "created": row["created"],
        "started": row["started"],
        "finished": row["finished"],
        "inputs": json.loads(row["inputs"]),
        "outputs": json.loads(row["outputs"]),
    }


class JobManager:
    """The job table and the worker pool."""

    def __init__(self, *, db: Database, kinds: list[JobKind], workers: int = 1, max_pending: int = 256):
        self.db = db
        self.kinds = {kind.name: kind for kind in kinds}
        self.workers = workers
        self.max_pending = max_pending
        self._pool: ThreadPoolExecutor | None = None
        self._cancel: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._closing = False

    # --- life cycle ----------------------------------------------------------------------------

    def start(self) -> dict[str, int]:
        """Recover from the last run (see the module docstring), then start the pool and requeue."""
        # A running job whose cancel was asked for ends as the user wanted; the others failed.
        interrupted = self.db.execute(
            "UPDATE jobs SET state = CASE cancel_requested WHEN 0 THEN 'failed' ELSE 'cancelled' END, "
            "error = CASE cancel_requested WHEN 0 THEN ? END, stage = CASE cancel_requested WHEN 0 THEN stage ELSE 'cancelled' END, "
            "finished = ? WHERE state = 'running'",
            (INTERRUPTED, utc_now()),
        ).rowcount
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="neural-shapes-job")
        queued = [row["id"] for row in self.db.all("SELECT id FROM jobs WHERE state = 'queued' ORDER BY created")]
        for job_id in queued:
            self._pool.submit(self._run, job_id)
        return {"interrupted": interrupted, "resumed": len(queued)}

    def shutdown(self) -> None:
        """Stop: running jobs are cancelled (and end failed as interrupted), queued ones stay queued."""
        with self._lock:
            self._closing = True
            for event in self._cancel.values():
                event.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def pending_uploads(self) -> set[str]:
        """Upload ids that queued jobs still need."""
        needed: set[str] = set()
        for row in self.db.all("SELECT kind, inputs FROM jobs WHERE state IN ('queued', 'running')"):
            kind = self.kinds.get(row["kind"])
            if kind is not None:
                needed.update(kind.uploads(json.loads(row["inputs"])))
        return needed

    # --- requests ------------------------------------------------------------------------------

    def submit(self, kind: str, inputs: dict[str, Any]) -> dict:
        """Queue a job; :class:`Busy` when ``max_pending`` jobs are already queued or running."""
        if kind not in self.kinds:
            raise NeuralShapesError(f"unknown job kind '{kind}' (known: {', '.join(sorted(self.kinds))})")
        if self._pool is None or self._closing:
            raise Busy("the service is shutting down")
        job_id = new_id()
        with self.db.transaction() as conn:
            pending = conn.execute("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')").fetchone()[0]
            if pending >= self.max_pending:
                raise Busy(f"{pending} jobs are queued or running, the limit is {self.max_pending}; try again later")
            conn.execute(
                "INSERT INTO jobs (id, kind, state, created, inputs) VALUES (?, ?, 'queued', ?, ?)",
                (job_id, kind, utc_now(), to_json(inputs)),
            )
        self._pool.submit(self._run, job_id)
        return self.get(job_id)

    def get(self, job_id: str) -> dict:
        check_id(job_id, "job")
        row = self.db.one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if row is None:
            raise NotFound(f"no job with id {job_id}")
        return _public(row)

    def list(
        self, *, state: str | None = None, kind: str | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[list[dict], int]:
        """Jobs, newest first, and the total count (filtered by state / kind when given)."""
        if state is not None and state not in STATES:
            raise NeuralShapesError(f"unknown job state '{state}' (known: {', '.join(STATES)})")
        where, params = [], []
        if state is not None:
            where.append("state = ?")
            params.append(state)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self.db.all(
            f"SELECT * FROM jobs {clause} ORDER BY created DESC, id LIMIT ? OFFSET ?", (*params, limit, offset)
        )
        total = self.db.one(f"SELECT COUNT(*) AS n FROM jobs {clause}", tuple(params))["n"]
        return [_public(r) for r in rows], total

    def cancel(self, job_id: str) -> dict:
        """Cancel a queued job at once, or ask a running one to stop (it ends ``cancelled`` shortly).
        Cancelling a cancelled job is a no-op; a job that succeeded or failed is a :class:`Conflict`."""
        job = self.get(job_id)
        if job["state"] == "queued":
            done = self.db.execute(
                "UPDATE jobs SET state = 'cancelled', cancel_requested = 1, finished = ?, stage = 'cancelled before it started' "
                "WHERE id = ? AND state = 'queued'",
                (utc_now(), job_id),
            ).rowcount
            if done:
                return self.get(job_id)
            job = self.get(job_id)  # it started meanwhile
        if job["state"] == "running":
            self.db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
            with self._lock:
                event = self._cancel.get(job_id)
            if event is not None:
                event.set()
            return self.get(job_id)
        if job["state"] == "cancelled":
            return job
        raise Conflict(f"job {job_id} already {job['state']}; only queued or running jobs can be cancelled")

    # --- the worker side -----------------------------------------------------------------------

    def _run(self, job_id: str) -> None:
        """Run one job on a pool thread; never raises (every outcome ends up in the row)."""
        try:
            self._run_job(job_id)
        except Exception:  # a failure of the bookkeeping itself (e.g. the disk is full): keep the pool alive
            log.exception("job %s: could not record its outcome", job_id)

    def _run_job(self, job_id: str) -> None:
        event = threading.Event()
        with self._lock:
            if self._closing:
                return  # stays queued; runs again at the next start
            self._cancel[job_id] = event
        try:
            claimed = self.db.execute(
                "UPDATE jobs SET state = 'running', started = ?, stage = 'starting' WHERE id = ? AND state = 'queued'",
                (utc_now(), job_id),
            ).rowcount
            if not claimed:
                return  # cancelled while queued
            row = self.db.one("SELECT kind, inputs, outputs FROM jobs WHERE id = ?", (job_id,))
            context = JobContext(job_id=job_id, inputs=json.loads(row["inputs"]), cancel=event, _manager=self)
            context.outputs = json.loads(row["outputs"])
            try:
                outputs = self.kinds[row["kind"]].run(context)
            except Cancelled:
                if (
                    self._closing
                    and not self.db.one("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,))["cancel_requested"]
                ):
                    self._finish(job_id, "failed", error=INTERRUPTED, outputs=context.outputs)
                else:
                    self._finish(job_id, "cancelled", stage="cancelled", outputs=context.outputs)
            except NeuralShapesError as error:
                self._finish(job_id, "failed", error=str(error), outputs=context.outputs)
            except Exception as error:
                log.exception("job %s failed", job_id)
                self._finish(
                    job_id,
                    "failed",
                    error=f"internal error: {type(error).__name__}: {error}".splitlines()[0],
                    outputs=context.outputs,
                )
            else:
                self._finish(
                    job_id, "succeeded", stage="done", outputs={**context.outputs, **(outputs or {})}, progress=1.0
                )
        finally:
            with self._lock:
                self._cancel.pop(job_id, None)

    def _finish(
        self,
        job_id: str,
        state: str,
        *,
        outputs: dict,
        error: str | None = None,
        stage: str | None = None,
        progress: float | None = None,
    ) -> None:
        self.db.execute(
            "UPDATE jobs SET state = ?, error = ?, outputs = ?, finished = ?, stage = COALESCE(?, stage), progress = COALESCE(?, progress) WHERE id = ?",
            (state, error, to_json(outputs), utc_now(), stage, progress, job_id),
        )
