"""Service jobs whose shapes become neural objects (convert, interpolate, generate, complete), followed
without blocking the UI.

From an operator, a run goes: a worker thread submits the job (uploads and the POST, HTTP only) unless
the operator already did; a ``bpy.app.timers`` tick polls the job every 0.5 s, showing its progress in
the panel and the status bar; once it has succeeded the worker downloads its shapes (records, proxy
meshes, ``.h5`` files) and the next tick adds them to the scene where the job's ``place`` says. Only the
main thread touches bpy, and the scene changes only in that last step, so a failed or cancelled job
leaves it as it was. One run at a time. ``blender -b`` scripts, where timers do not fire while a script
blocks, use :func:`wait_for_job`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import bpy
from mathutils import Matrix

from .client.client import Client, ServiceError
from .client.models import Job
from .connection import ConnectionSettings, make_client
from .neural_objects import FetchedShape, add_neural_object, fetch_shapes

POLL_SECONDS = 0.5

# The world matrix of each result shape, given the finished job (its inputs say e.g. the times of an
# interpolation) and the shapes in the order of its outputs.
Placement = Callable[[Job, list[FetchedShape]], list[Matrix]]


@dataclass
class TrackedJob:
    """A job whose shapes become neural objects: how to place them, and how far it is."""

    place: Placement
    resolution: int  # marching cubes grid of the proxy meshes
    verb: str  # the last line says "<verb> N object(s)"
    job_id: str = ""
    state: str = "running"  # then succeeded, failed or cancelled
    progress: float = 0.0
    stage: str = ""
    error: str = ""
    created: list[str] = field(default_factory=list)  # names of the neural objects made

    @property
    def summary(self) -> str:
        """The last line shown once the run is over."""
        return f"{self.verb} {len(self.created)} object(s)" if self.state == "succeeded" else f"{self.state}: {self.error}"


def follow(tracked: TrackedJob, job: Job) -> bool:
    """Take the job's progress; True once it is done (a failure or cancel is recorded, a success is not yet:
    its shapes still have to be added)."""
    tracked.progress, tracked.stage = job.progress, job.stage
    if job.done and job.state != "succeeded":
        tracked.state, tracked.error = job.state, job.error or job.state
    return job.done


def build(tracked: TrackedJob, job: Job, shapes: list[FetchedShape], collection: bpy.types.Collection) -> None:
    """Add the succeeded job's fetched shapes to ``collection`` as placed neural objects (main thread)."""
    matrices = tracked.place(job, shapes)
    tracked.created = [add_neural_object(shape, collection, matrix).name for shape, matrix in zip(shapes, matrices)]
    tracked.state, tracked.progress = "succeeded", 1.0


def wait_for_job(client: Client, tracked: TrackedJob, collection: bpy.types.Collection, timeout: float = 3600.0) -> TrackedJob:
    """Block until the job is done and build its objects (scripts and ``blender -b``)."""
    job = client.wait(tracked.job_id, timeout=timeout, poll=POLL_SECONDS)
    follow(tracked, job)
    if job.state == "succeeded":
        build(tracked, job, fetch_shapes(client, job.shape_ids, tracked.resolution), collection)
    return tracked


# --- the UI runner -----------------------------------------------------------------------------------

_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="neural-shapes")  # never touches bpy


@dataclass
class _Run:
    tracked: TrackedJob
    settings: ConnectionSettings
    step: Future | None  # the worker's step in flight: the submission (-> job id), then the download (-> job, shapes)


_runs: dict[str, _Run] = {}  # the run in flight (one at a time), by a local key


def busy() -> bool:
    return bool(_runs)


def start(context: bpy.types.Context, settings: ConnectionSettings, tracked: TrackedJob, submit: Callable[[], str] | None = None) -> str:
    """Follow ``tracked`` with a timer; ``submit`` (HTTP only, returns the job id) runs on the worker thread
    first when the job is not started yet. Returns the run's key (``window_manager.neural_shapes_key``)."""
    key = uuid.uuid4().hex
    _runs[key] = _Run(tracked, settings, _pool.submit(submit) if submit is not None else None)
    wm = context.window_manager
    wm.neural_shapes_progress, wm.neural_shapes_stage, wm.neural_shapes_job, wm.neural_shapes_key = 0.0, "starting", tracked.job_id, key
    wm.progress_begin(0, 100)
    bpy.app.timers.register(lambda: poll(key), first_interval=POLL_SECONDS)
    return key


def poll(key: str) -> float | None:
    """One timer tick (see the module docstring); returns when to tick again, None once the run is over."""
    run = _runs.get(key)
    if run is None:
        return None
    tracked, wm = run.tracked, bpy.context.window_manager
    finished = False
    try:
        if run.step is not None and not run.step.done():
            return POLL_SECONDS
        if not tracked.job_id:
            tracked.job_id = wm.neural_shapes_job = run.step.result()  # re-raises the worker's ServiceError
            run.step = None
        elif run.step is not None:
            build(tracked, *run.step.result(), bpy.context.scene.collection)
            finished = True
        else:
            client = make_client(run.settings)
            job = client.job(tracked.job_id)
            finished = follow(tracked, job)
            if job.state == "succeeded":
                finished, tracked.stage = False, f"loading {len(job.shape_ids)} shape(s)"
                run.step = _pool.submit(lambda: (job, fetch_shapes(client, job.shape_ids, tracked.resolution)))
    except ServiceError as error:
        tracked.state, tracked.error, finished = "failed", error.detail, True
    wm.neural_shapes_progress = tracked.progress
    wm.neural_shapes_stage = tracked.summary if finished else tracked.stage
    if finished:
        _runs.pop(key, None)
        wm.progress_end()
    else:
        wm.progress_update(int(tracked.progress * 100))
    _tag_redraw()
    return None if finished else POLL_SECONDS


def cancel(key: str) -> None:
    """Ask the service to cancel the run's job (after its submission, if that is still going);
    :class:`ServiceError` when it cannot. Nothing to do when the run is over."""
    run = _runs.get(key)
    if run is None:
        return
    job_id = run.tracked.job_id or run.step.result(timeout=60)
    make_client(run.settings).cancel(job_id)


def _tag_redraw() -> None:
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "STATUSBAR"):
                area.tag_redraw()
