"""The torch device that training runs on: CUDA when present, as the Warp kernels choose theirs; and the
size of torch's CPU thread pool, which also gives way to other busy processes (:class:`SharedCores`).

``NEURAL_SHAPES_DEVICE`` (``cpu``, ``cuda:0`` ...) overrides, the same variable :mod:`kernels.device` reads.
Trainers keep their random generators and data on the CPU (so a run draws the same batches on any
device) and move each batch to this device.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from backend.errors import NeuralShapesError
from kernels.device import available_cores


def training_device() -> torch.device:
    """``NEURAL_SHAPES_DEVICE`` if set, else ``cuda`` when torch sees a GPU, else ``cpu``."""
    name = os.environ.get("NEURAL_SHAPES_DEVICE")
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise NeuralShapesError(
            f"NEURAL_SHAPES_DEVICE={name!r} is not a torch device ({error})".splitlines()[0]
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NeuralShapesError(f"NEURAL_SHAPES_DEVICE={name!r}: torch sees no CUDA device here")
    return device


def limit_torch_threads() -> int:
    """Shrink torch's CPU thread pool to the cores this process may use (affinity mask, cgroup quota) and
    return its size: torch sizes it from the machine's cores, and threads beyond the quota spin against
    each other. Never grows it, so a caller's smaller setting stays."""
    threads = min(torch.get_num_threads(), available_cores())
    torch.set_num_threads(threads)
    return threads


PROC_STAT = Path("/proc/stat")  # the first line: jiffies the whole machine spent per state


class SharedCores:
    """Torch's thread count, following what other processes leave of the cores.

    Each of torch's threads waits for the slowest at every operation, so a thread that shares its core
    with another busy process (Blender working next to the service, a second job) slows the whole pool
    to that core's share: two threads next to one busy loop on two cores ran a fit 13x slower than alone.
    Used as a context around a fit: :meth:`adjust`, called between stretches of work, measures the cores other
    processes used since the last call (the machine's busy time less this process's own) and sets torch
    to the cores left, at least one, at most the count it started with; once the others stop, the threads
    come back, and leaving the context restores the count it started with. On systems without
    ``/proc/stat`` :meth:`adjust` does nothing.
    """

    def __init__(self) -> None:
        self.most = torch.get_num_threads()
        self._last = self._sample()

    def __enter__(self) -> SharedCores:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Give torch back the threads it started with: the next fit in this process starts from them."""
        torch.set_num_threads(self.most)

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        """(wall seconds, machine busy CPU seconds, this process's CPU seconds), or None without /proc/stat."""
        try:
            fields = PROC_STAT.read_text().split("\n", 1)[0].split()[1:]
        except OSError:
            return None
        jiffies = [int(value) for value in fields]
        idle = jiffies[3] + (jiffies[4] if len(jiffies) > 4 else 0)  # idle + iowait
        times = os.times()
        return time.monotonic(), (sum(jiffies[:8]) - idle) / os.sysconf("SC_CLK_TCK"), times.user + times.system

    def others_busy(self) -> float | None:
        """Cores other processes kept busy since the last call (None when unknown or too soon to say)."""
        now = self._sample()
        if now is None or self._last is None or now[0] - self._last[0] < 0.2:
            return None
        wall, machine, own = (a - b for a, b in zip(now, self._last))
        self._last = now
        return max(0.0, (machine - own) / wall)

    def adjust(self) -> int:
        """Set torch's threads to the cores the others leave free; returns the count in use."""
        others = self.others_busy()
        if others is not None:
            free = available_cores() - round(others)  # a busy loop shows as ~0.6-1.0 core: it counts as one
            threads = max(1, min(self.most, free))
            if threads != torch.get_num_threads():
                torch.set_num_threads(threads)
        return torch.get_num_threads()
