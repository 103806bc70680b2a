"""Where the batches of a collection conversion run: in the driver's own process, in a local process pool,
or on a Ray cluster. Each executor turns a :class:`~backend.library.worker.BatchJob` into a
``concurrent.futures.Future`` of its results, so the driver (:mod:`backend.library.conversion`) waits on
all three the same way.

Threads never oversubscribe the cores: a pool process is pinned to its own share of the cores (its
affinity mask, which sizes torch's and Warp's pools, :func:`kernels.device.available_cores`); a Ray task
asks the cluster for ``cpus_per_task`` CPUs and keeps to that many threads (:attr:`BatchJob.threads`).
"""

from __future__ import annotations

import multiprocessing
import os
import socket
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace
from typing import Protocol

from backend.errors import NeuralShapesError
from backend.library.worker import BatchJob, ItemResult, convert_batch
from kernels.device import available_cores


class Executor(Protocol):
    """Runs batches; ``slots`` of them at once."""

    name: str
    slots: int

    def submit(self, job: BatchJob) -> Future[list[ItemResult]]: ...

    def close(self, abandon: bool = False) -> None:
        """Release the workers; ``abandon``: stop the batches still running (the run was interrupted)."""


class InProcess:
    """Batches run one by one in the calling process (``--workers 0``): no start-up, simplest to debug."""

    name = "in-process"
    slots = 1

    def submit(self, job: BatchJob) -> Future[list[ItemResult]]:
        future: Future[list[ItemResult]] = Future()
        try:
            future.set_result(convert_batch(job))
        except Exception as error:  # the driver treats it as a lost batch, as from any other executor
            future.set_exception(error)
        return future

    def close(self, abandon: bool = False) -> None:
        pass


class LocalPool:
    """``workers`` processes on this machine (spawned, not forked: torch and Warp keep threads), each pinned
    to its own share of the available cores, or to its own GPU (``devices``, e.g. ``["cuda:0", "cuda:1"]``).

    A pool whose process died (killed, out of memory) is replaced at the next submit; the driver retries
    the batches it lost."""

    def __init__(self, workers: int, devices: list[str] | None = None):
        self.slots = max(1, workers)
        self.name = f"local pool of {self.slots}"
        self._devices = devices or []
        self._pool: ProcessPoolExecutor | None = None

    def _start(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")
        shares = context.Queue()
        for share in _core_shares(self.slots, self._devices):
            shares.put(share)
        return ProcessPoolExecutor(self.slots, mp_context=context, initializer=_take_share, initargs=(shares,))

    def submit(self, job: BatchJob) -> Future[list[ItemResult]]:
        if self._pool is None or getattr(self._pool, "_broken", False):
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._start()
        return self._pool.submit(convert_batch, job)

    def close(self, abandon: bool = False) -> None:
        if self._pool is None:
            return
        if abandon:  # no public way to stop a running call before Python 3.14's terminate_workers()
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = None


def _core_shares(workers: int, devices: list[str]) -> list[tuple[set[int], str | None]]:
    """Per worker: the cores it may use and its device (None: the default). Cores are split evenly; with
    more workers than cores they share."""
    try:
        cores = sorted(os.sched_getaffinity(0))[: available_cores()]
    except AttributeError:  # not Linux: no pinning
        cores = []
    shares = []
    for index in range(workers):
        mine = set(cores[index::workers]) or ({cores[index % len(cores)]} if cores else set())
        shares.append((mine, devices[index % len(devices)] if devices else None))
    return shares


def _take_share(shares) -> None:
    """Pool process initializer: pin to a share of the cores (and a device) before any work is done."""
    cores, device = shares.get()
    if cores:
        os.sched_setaffinity(0, cores)
    if device:
        os.environ["NEURAL_SHAPES_DEVICE"] = device
    from backend.torch_device import limit_torch_threads

    limit_torch_threads()


class RayCluster:
    """Batches as Ray tasks on a cluster: ``address`` "auto" (a running cluster), "local" (start one in
    this process), or a head's ``host:port`` / ``ray://`` address.

    Each task asks for ``cpus_per_task`` CPUs and, when the cluster has GPUs, one GPU. Ray retries a task
    whose worker process or node died (``max_retries``) on another worker; the driver retries what Ray
    gives up on. Nodes need this package installed (``pip install neural-shapes[ray]``) and the sources
    at the same paths (a shared file system); results come back to the driver, which alone writes."""

    def __init__(self, address: str, cpus_per_task: int = 1, max_retries: int = 3):
        try:
            import ray
        except ImportError:
            raise NeuralShapesError("--ray needs Ray: pip install 'neural-shapes[ray]'") from None
        self._ray = ray
        _check_reachable(address)
        try:
            ray.init(
                address=None if address == "local" else address,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise NeuralShapesError(f"cannot join the Ray cluster at {address}: {error}".splitlines()[0]) from None
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = int(resources.get("CPU", 1))
        per_task_gpus = 1 if gpus else 0
        self.slots = max(1, gpus if gpus else cpus // cpus_per_task)
        self.name = f"ray ({len(ray.nodes())} nodes, {cpus} CPUs, {gpus} GPUs)"
        self._task = ray.remote(convert_batch).options(
            num_cpus=cpus_per_task,
            num_gpus=per_task_gpus,
            max_retries=max_retries,
        )
        self._threads = cpus_per_task
        self._running: dict[Future, object] = {}  # the tasks not finished yet, for close(abandon=True)

    def submit(self, job: BatchJob) -> Future[list[ItemResult]]:
        ref = self._task.remote(replace(job, threads=self._threads))
        future = ref.future()
        self._running[future] = ref
        future.add_done_callback(lambda done: self._running.pop(done, None))  # a held ref keeps its result alive
        return future

    def close(self, abandon: bool = False) -> None:
        if abandon:
            for ref in list(self._running.values()):
                self._ray.cancel(ref, force=True)
        self._ray.shutdown()


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse at once a ``host:port`` where nothing listens: Ray itself retries such an address for minutes."""
    if address in ("auto", "local") or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as error:
        raise NeuralShapesError(f"no Ray cluster answers at {address} ({error})") from None
