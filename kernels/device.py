"""Warp initialisation and device choice shared by every kernel module.

CUDA is used automatically when present; ``NEURAL_SHAPES_DEVICE`` (``cpu`` or ``cuda:0`` ...) overrides.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import warp as wp

# Warp's start-up banner and module-load lines go to stdout, which must stay clean for --json output.
wp.config.log_level = wp.LOG_WARNING

_init_lock = threading.Lock()
_initialised = False
_pool: ThreadPoolExecutor | None = None  # for CPU launches; started once (a start costs about 1 ms a thread)
_stop_check: ContextVar[Callable[[], None] | None] = ContextVar("stop_check", default=None)


def init_warp() -> None:
    """Initialise Warp once per process, quietly (kernels compile lazily on first launch)."""
    global _initialised
    with _init_lock:
        if not _initialised:
            wp.init()
            _initialised = True


def default_device(override: str | None = None) -> str:
    """Name of the Warp device to run on: the override, then ``NEURAL_SHAPES_DEVICE``, then CUDA if present, else CPU."""
    init_warp()
    name = override or os.environ.get("NEURAL_SHAPES_DEVICE")
    if name:
        return str(wp.get_device(name))
    return "cuda:0" if wp.is_cuda_available() else "cpu"


CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "QUOTA PERIOD" in microseconds, or "max PERIOD"


THREADS_VARIABLE = "NEURAL_SHAPES_THREADS"  # a scheduler's share for this process (a Ray task's CPUs)


def available_cores() -> int:
    """CPU cores this process may actually use: its affinity mask (taskset, a scheduler's pinning), capped by
    a cgroup v2 CPU quota (containers, CI runners), which ``os.cpu_count`` reports neither of, and by
    ``NEURAL_SHAPES_THREADS`` when set (a scheduler's share that is no mask: Ray's CPUs per task); at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    share = os.environ.get(THREADS_VARIABLE, "")
    if share.isdigit() and int(share) > 0:
        cores = min(cores, int(share))
    return max(1, cores)


def cpu_workers() -> int:
    """Threads used to split one CPU launch: Warp runs a CPU launch on one thread but releases the GIL."""
    return min(available_cores(), 16)


def run_chunked(
    device: str, n: int, run: Callable[[int, int], None], chunks_per_worker: int = 4, min_chunk: int = 2048
) -> None:
    """Call ``run(start, stop)`` over consecutive ranges covering ``[0, n)``.

    On the CPU the ranges go to :func:`cpu_workers` threads (a Warp CPU launch runs on one thread but
    releases the GIL), several per thread so uneven work balances; on a GPU one call covers everything.
    ``run`` must only launch kernels (no host copies needed by other ranges, and no run_chunked: the
    shared threads would wait on themselves). Inside :func:`stoppable` every range is checked first.
    """
    if n <= 0:
        return
    check = _stop_check.get() or _never_stop  # read here: the pool threads do not see this context

    def checked(start: int, stop: int) -> None:
        check()
        run(start, stop)

    workers = cpu_workers() if str(device) == "cpu" else 1
    chunk = max(min_chunk, -(-n // (workers * chunks_per_worker))) if workers > 1 else n
    ranges = [(start, min(start + chunk, n)) for start in range(0, n, chunk)]
    if len(ranges) == 1:
        checked(*ranges[0])
        return
    list(_cpu_pool().map(lambda r: checked(*r), ranges))


@contextmanager
def stoppable(check: Callable[[], None]) -> Iterator[None]:
    """Call ``check()`` before each range of :func:`run_chunked` in this context; it stops the work by raising.

    A Warp launch cannot be interrupted, so this is how a service request stops early (its client left,
    its deadline passed): at the next range, typically within a fraction of a second on the CPU.
    """
    token = _stop_check.set(check)
    try:
        yield
    finally:
        _stop_check.reset(token)


def _never_stop() -> None:
    pass


def _cpu_pool() -> ThreadPoolExecutor:
    global _pool
    with _init_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=cpu_workers(), thread_name_prefix="warp-cpu")
        return _pool


def _forget_pool() -> None:
    global _pool
    _pool = None  # a forked child has none of its parent's threads


os.register_at_fork(after_in_child=_forget_pool)
