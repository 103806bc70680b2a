"""Service jobs whose shapes become neural objects (convert, interpolate, generate, complete), followed
without blocking the UI.

From an operator, one :mod:`.workers` task in the "job" slot does it all on a worker: it submits the job
(uploads and the POST) unless the operator passed its id, polls it every 0.5 s (publishing progress in
the :class:`TrackedJob`, which the timer shows in the panel and the status bar), sends a cancel when
asked, and once the job has succeeded downloads its shapes (records, proxy meshes, ``.h5`` files). The
main thread then adds them to the scene where the job's ``place`` says. The scene changes only in that
last step, so a failed or cancelled job, or one whose download breaks, leaves it as it was. One job at
a time. ``blender -b`` scripts, where timers do not fire while a script blocks, use :func:`wait_for_job`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import bpy
from mathutils import Matrix

from ..client.client import Client
from ..client.connection import ConnectionSettings
from ..client.errors import ServiceError
from ..client.models import Job
from ..properties import state
from ..scene.neural_objects import FetchedShape, StoredShape, add_neural_object, fetch_shapes, remember_ids
from . import workers

POLL_SECONDS = 0.5
SLOT = "job"

# The world matrix of each result shape, given the finished job (its inputs say e.g. the times of an
# interpolation) and the shapes in the order of its outputs.
Placement = Callable[[Job, list[FetchedShape]], list[Matrix]]


@dataclass
class TrackedJob:
    """A job whose shapes become neural objects: how to place them, and how far it is. The worker writes
    ``job_id``, ``progress``, ``stage`` and ``imported``; the main thread only reads them until the end."""

    place: Placement
    resolution: int  # marching cubes grid of the proxy meshes
    verb: str  # the last line says "<verb> N object(s)"
    undo: str  # the undo step of the objects it adds
    job_id: str = ""
    state: str = "running"  # then succeeded, failed or cancelled
    progress: float = 0.0
    stage: str = ""
    error: str = ""
    created: list[str] = field(default_factory=list)  # names of the neural objects made
    cancel_requested: bool = False
    imported: list[tuple[StoredShape, str]] = field(
        default_factory=list
    )  # neural objects' shapes the submission imported
    dress: Callable[[bpy.types.Object, FetchedShape], None] | None = None  # e.g. the source's materials

    @property
    def summary(self) -> str:
        """The last line shown once the run is over."""
        return (
            f"{self.verb} {len(self.created)} object(s)" if self.state == "succeeded" else f"{self.state}: {self.error}"
        )


def follow(tracked: TrackedJob, job: Job) -> bool:
    """Take the job's progress; True once it is done (a failure or cancel is recorded, a success is not yet:
    its shapes still have to be added)."""
    tracked.progress, tracked.stage = float(job.progress), str(job.stage)
    if job.done and job.state != "succeeded":
        tracked.state, tracked.error = job.state, job.error or job.state
    return job.done


def build(tracked: TrackedJob, job: Job, shapes: list[FetchedShape], collection: bpy.types.Collection) -> None:
    """Add the succeeded job's fetched shapes to ``collection`` as placed neural objects (main thread)."""
    tracked.created = []
    render_resolution = bpy.context.scene.neural_shapes.render_resolution  # the scene's for new objects
    for shape, matrix in zip(shapes, tracked.place(job, shapes)):
        obj = add_neural_object(shape, collection, matrix, render_resolution)
        if tracked.dress is not None:
            tracked.dress(obj, shape)
        tracked.created.append(obj.name)
    tracked.state, tracked.progress = "succeeded", 1.0


def wait_for_job(
    client: Client, tracked: TrackedJob, collection: bpy.types.Collection, timeout: float = 3600.0
) -> TrackedJob:
    """Block until the job is done and build its objects (scripts and ``blender -b``)."""
    job = client.wait(tracked.job_id, timeout=timeout, poll=POLL_SECONDS)
    follow(tracked, job)
    if job.state == "succeeded":
        build(tracked, job, fetch_shapes(client, job.shape_ids, tracked.resolution), collection)
    return tracked


# --- the UI runner -----------------------------------------------------------------------------------

_current: list[TrackedJob] = []  # the job in the slot, for Cancel


def busy() -> bool:
    return workers.busy(SLOT)


def start(settings: ConnectionSettings, tracked: TrackedJob, submit: Callable[[Client], str] | None = None) -> None:
    """Follow ``tracked`` on a worker; ``submit(client)`` (HTTP only, returns the job id) runs there first
    when the job is not started yet. :class:`.LocalError` when a job runs already."""
    workers.start(
        SLOT,
        lambda: _run(settings, tracked, submit),
        lambda result: _finish(tracked, result),
        title="the job",
        pending="starting",
        line="stage",
        failed=lambda text: _failed(tracked, text),
        progress=lambda: _show(tracked),
    )
    _current[:] = [tracked]
    panel = state()
    panel.progress, panel.job = 0.0, tracked.job_id
    bpy.context.window_manager.progress_begin(0, 100)


def cancel() -> None:
    """Ask for the running job to be cancelled: the worker sends it (after the submission, if that is
    still going) and the job ends as the service says. Nothing to do when no job runs."""
    if busy() and _current:
        _current[0].cancel_requested = True


def _run(
    settings: ConnectionSettings, tracked: TrackedJob, submit: Callable[[Client], str] | None
) -> tuple[Job, list[FetchedShape]] | None:
    """The worker's part: submit, poll, cancel when asked, download; None when the job did not succeed."""
    client = workers.client(settings)
    if not tracked.job_id:
        tracked.stage = "submitting"
        tracked.job_id = submit(client)
    cancel_sent = False
    while True:
        if tracked.cancel_requested and not cancel_sent:
            try:
                client.cancel(tracked.job_id)
            except ServiceError as error:
                if error.status != 409:  # 409: it finished meanwhile, the poll below says how
                    raise
            cancel_sent = True
        job = client.job(tracked.job_id)
        if follow(tracked, job):
            break
        workers.pause(POLL_SECONDS)
    if job.state != "succeeded":
        return None
    tracked.stage = f"loading {len(job.shape_ids)} shape(s)"
    return job, fetch_shapes(client, job.shape_ids, tracked.resolution)


def _show(tracked: TrackedJob) -> None:
    panel = state()
    panel.progress, panel.stage, panel.job = tracked.progress, tracked.stage, tracked.job_id
    bpy.context.window_manager.progress_update(int(tracked.progress * 100))


def _finish(tracked: TrackedJob, result: tuple[Job, list[FetchedShape]] | None) -> str:
    _end(tracked)
    if result is not None:
        build(tracked, *result, bpy.context.scene.collection)
        workers.undo_step(tracked.undo)
    state().progress = tracked.progress
    return tracked.summary


def _failed(tracked: TrackedJob, text: str) -> str:
    _end(tracked)
    tracked.state, tracked.error = "failed", text
    return tracked.summary


def _end(tracked: TrackedJob) -> None:
    _current.clear()
    bpy.context.window_manager.progress_end()
    remember_ids(tracked.imported)
