"""One batch of a collection conversion, as a worker runs it: in the driver's process, a local pool process
or a Ray task. Everything it needs travels in a :class:`BatchJob`; what it made comes back as bytes in
:class:`ItemResult` s, and the driver alone writes files and manifest rows (so a lost worker leaves nothing
half-written, and workers need no access to the destination folder, only to the sources).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from backend.errors import NeuralShapesError
from backend.fitting.batched import FitSettings
from backend.fitting.pipeline import Quality, fit_and_escalate, shape_figures
from backend.library.manifest import Item
from backend.meshes.loading import NormalisedMesh, load_mesh_file
from backend.meshes.writing import obj_bytes
from backend.shapes.architecture import ModelFamily
from backend.shapes.shape_file import shape_to_bytes
from kernels.device import THREADS_VARIABLE


@dataclass(frozen=True)
class BatchJob:
    """Meshes fitted together in one batched model, and how."""

    items: list[Item]
    family: ModelFamily
    settings: FitSettings
    resolution: int
    quality: Quality
    max_faces: int
    half_precision: bool = False
    meshes: bool = False  # also return each reconstruction as OBJ text (source frame)
    threads: int | None = None  # torch and Warp threads for this batch; None: as the process has them


@dataclass
class ItemResult:
    """One item of a batch: its ``.h5`` bytes, OBJ bytes when asked and figures, or the one-line error.

    ``permanent``: the input itself is unusable (unreadable, empty, too large), so retrying cannot help."""

    sha256: str
    worker: str
    shape_bytes: bytes | None = None
    mesh_bytes: bytes | None = None
    metrics: dict = field(default_factory=dict)
    error: str | None = None
    permanent: bool = False


def worker_name() -> str:
    """Where this code runs, as the manifest records it: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def convert_batch(job: BatchJob) -> list[ItemResult]:
    """Load, fit and evaluate the batch's meshes; one result per item, in order.

    A source that no longer has the bytes it was registered with is failed (not permanently: the next
    run registers its new bytes). Errors other than a bad input propagate: the driver retries the batch.
    """
    if job.threads is not None:  # a scheduler's share of a machine that is not pinned (a Ray task's CPUs)
        import torch

        os.environ[THREADS_VARIABLE] = str(job.threads)  # Warp's CPU pool, made at its first launch here
        torch.set_num_threads(job.threads)
    name = worker_name()
    results = {item.sha256: ItemResult(item.sha256, name) for item in job.items}
    loaded: list[tuple[Item, NormalisedMesh]] = []
    for item in job.items:
        try:
            mesh = load_mesh_file(item.source, max_faces=job.max_faces)
        except NeuralShapesError as error:
            results[item.sha256].error, results[item.sha256].permanent = str(error), True
            continue
        if mesh.source_sha256 != item.sha256:
            results[item.sha256].error = f"{item.source}: changed since it was registered; run again to convert it"
            continue
        loaded.append((item, mesh))
    fits = fit_and_escalate(
        job.family,
        [mesh for _, mesh in loaded],
        job.settings,
        escalation=job.quality.escalation,
        resolution=job.resolution,
        source_names=[item.source.name for item, _ in loaded],
    )
    for fit in fits:
        item, mesh = loaded[fit.index]
        result = results[item.sha256]
        if fit.error is not None:
            result.error = f"{item.source}: {fit.error}"
            continue
        result.shape_bytes = shape_to_bytes(fit.shape, half_precision=job.half_precision)
        if job.meshes:
            reconstruction = fit.reconstruction
            vertices = mesh.transform.to_source(reconstruction.vertices)
            result.mesh_bytes = obj_bytes(vertices, reconstruction.faces, reconstruction.vertex_normals)
        result.metrics = shape_figures(fit.shape)
    return [results[item.sha256] for item in job.items]
