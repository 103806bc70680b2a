"""The driver of a collection conversion: register the sources in the manifest, hand batches to an
executor, write what comes back and record it, batch by batch.

Only the driver writes: each output file atomically (``DEST/STEM.h5``, ``DEST/STEM.obj`` with meshes),
then the batch's rows in one transaction. A run killed at any point leaves finished outputs whole and
their rows either done or ``running``; the next run puts ``running`` rows back in the queue and rewrites
the same names, so nothing is duplicated or missing.

A batch whose worker was lost (a killed process, a dead node, an exception outside the per-item
handling) is retried item by item (a crashing mesh cannot take others down twice) while its items have
attempts left (``max_attempts``); then they are failed with the reason.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path

from backend.errors import NeuralShapesError
from backend.files import write_atomically
from backend.fitting.batched import FitSettings
from backend.fitting.pipeline import DEFAULT_FIT_BATCH, DEFAULT_RESOLUTION, Quality
from backend.library.executors import Executor
from backend.library.manifest import Item, ItemRecord, Manifest, ManifestLock
from backend.library.worker import BatchJob, ItemResult
from backend.meshes.loading import DEFAULT_MAX_FACES
from backend.shapes.architecture import ModelFamily


@dataclass(frozen=True)
class CollectionSettings:
    """How a collection is converted (everything but where the batches run)."""

    family: ModelFamily
    fit: FitSettings = FitSettings()
    resolution: int = DEFAULT_RESOLUTION
    quality: Quality = Quality.STANDARD
    max_faces: int = DEFAULT_MAX_FACES
    half_precision: bool = False
    meshes: bool = False  # also write each reconstruction as DEST/STEM.obj
    batch_size: int = DEFAULT_FIT_BATCH  # meshes fitted together in one batched model, at most
    max_attempts: int = 3  # per source, over all runs; inputs that cannot be read are not retried
    retry_failed: bool = False  # give every failed source one more attempt


@dataclass
class RunProgress:
    """Where a run stands, after each batch."""

    total: int  # sources to convert in this run
    converted: int = 0
    failed: int = 0
    retried: int = 0  # items put back in the queue after a lost batch
    elapsed: float = 0.0  # seconds since the first batch was handed out

    @property
    def finished(self) -> int:
        return self.converted + self.failed

    @property
    def items_per_second(self) -> float:
        return self.finished / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        rate = self.items_per_second
        return (self.total - self.finished) / rate if rate > 0 else None


@dataclass
class RunSummary:
    """What one run did; the whole collection's figures are in the manifest (:mod:`backend.library.report`)."""

    progress: RunProgress
    already_done: int  # sources whose bytes were converted by an earlier run
    not_retried: int  # sources that failed before and are not retried
    recovered: int  # rows an interrupted run had left running
    unreadable: list[str]  # sources that could not be read at all (not in the manifest)
    executor: str


def convert_collection(
    sources: list[Path],
    dest: Path,
    settings: CollectionSettings,
    executor: Executor,
    *,
    progress: Callable[[RunProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> RunSummary:
    """Convert every source not yet done into ``dest``, recording each in ``dest``'s manifest.

    ``progress`` is called after each batch; ``cancel`` stops handing out batches and waits for none:
    items in flight go back to pending (as after a kill). Raises :class:`NeuralShapesError` when
    ``dest`` is in use by another run or its manifest cannot be opened.
    """
    dest = Path(dest)
    with ManifestLock(_made(dest)):
        manifest = Manifest(dest)
        try:
            for leftover in dest.glob(".*.tmp"):  # a killed run's unfinished write (write_atomically's temporary)
                leftover.unlink(missing_ok=True)
            recovered = manifest.recover_interrupted()
            registered = manifest.register(
                sources, max_attempts=settings.max_attempts, retry_failed=settings.retry_failed
            )
            state = RunProgress(total=len(registered.todo))
            _run(manifest, dest, registered.todo, settings, executor, state, progress, cancel)
        finally:
            manifest.close()
    return RunSummary(
        state,
        registered.done,
        registered.failed,
        recovered,
        registered.unreadable,
        executor.name,
    )


def _made(dest: Path) -> Path:
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise NeuralShapesError(f"{dest}: cannot create the output folder ({error.strerror or error})") from None
    return dest


def _run(
    manifest: Manifest,
    dest: Path,
    todo: list[Item],
    settings: CollectionSettings,
    executor: Executor,
    state: RunProgress,
    progress: Callable[[RunProgress], None] | None,
    cancel: threading.Event | None,
) -> None:
    # Batches no larger than needed to keep every slot busy: 40 meshes on 4 slots run as 4 x 10, not 16+16+8.
    size = max(1, min(settings.batch_size, math.ceil(len(todo) / executor.slots))) if todo else 1
    queue = deque(todo[start : start + size] for start in range(0, len(todo), size))
    attempts = {item.sha256: item.attempts for item in todo}
    in_flight: dict[Future, list[Item]] = {}
    started = time.perf_counter()
    try:
        while queue or in_flight:
            while queue and len(in_flight) < executor.slots and not (cancel and cancel.is_set()):
                batch = queue.popleft()
                manifest.mark_running(batch, executor.name)
                for item in batch:
                    attempts[item.sha256] += 1
                in_flight[executor.submit(_job(batch, settings))] = batch
            if not in_flight:
                break  # cancelled with batches still queued: they stay pending
            finished, _ = wait(list(in_flight), timeout=1.0, return_when=FIRST_COMPLETED)
            for future in finished:
                batch = in_flight.pop(future)
                try:
                    records = _store(dest, batch, future.result())
                except Exception as error:  # the batch was lost: its worker died, or a bug outside one item
                    records = _lost(batch, error, attempts, settings.max_attempts, queue)
                    state.retried += sum(record.state == "pending" for record in records)
                manifest.record(records)
                state.converted += sum(record.state == "done" for record in records)
                state.failed += sum(record.state == "failed" for record in records)
                state.elapsed = time.perf_counter() - started
                if progress is not None:
                    progress(state)
    finally:
        # Interrupted (Ctrl+C, cancel, an error here): what is still out goes back to pending, as after a kill.
        for future in in_flight:
            future.cancel()
        stranded = [item for batch in in_flight.values() for item in batch]
        if stranded:
            manifest.release(stranded)
        executor.close(abandon=bool(stranded))


def _job(batch: list[Item], settings: CollectionSettings) -> BatchJob:
    return BatchJob(
        items=batch,
        family=settings.family,
        settings=settings.fit,
        resolution=settings.resolution,
        quality=settings.quality,
        max_faces=settings.max_faces,
        half_precision=settings.half_precision,
        meshes=settings.meshes,
    )


def _store(dest: Path, batch: list[Item], results: list[ItemResult]) -> list[ItemRecord]:
    """Write a finished batch's outputs (each atomically) and return its rows."""
    records = []
    for item, result in zip(batch, results, strict=True):
        if result.error is not None or result.shape_bytes is None:
            error = result.error or f"{item.source}: the worker returned no shape"
            records.append(ItemRecord(item.sha256, "failed", result.worker, error, result.permanent))
            continue
        try:
            if result.mesh_bytes is not None:
                write_atomically(dest / f"{item.stem}.obj", result.mesh_bytes)
            write_atomically(dest / f"{item.stem}.h5", result.shape_bytes)
        except OSError as error:
            reason = f"{dest / item.stem}: cannot write the output ({error.strerror or error})"
            records.append(ItemRecord(item.sha256, "failed", result.worker, reason))
            continue
        records.append(
            ItemRecord(item.sha256, "done", result.worker, output_bytes=len(result.shape_bytes), metrics=result.metrics)
        )
    return records


def _lost(
    batch: list[Item], error: Exception, attempts: dict[str, int], max_attempts: int, queue: deque
) -> list[ItemRecord]:
    """Rows for a lost batch: items with attempts left go back in the queue one by one, the others fail."""
    reason = f"worker lost: {type(error).__name__}: {error}".splitlines()[0]
    records = []
    for item in batch:
        if attempts[item.sha256] < max_attempts:
            queue.append([item])
            records.append(ItemRecord(item.sha256, "pending"))
        else:
            records.append(ItemRecord(item.sha256, "failed", error=f"{item.source}: {reason}"))
    return records
