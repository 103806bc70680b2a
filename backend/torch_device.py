"""The torch device that training runs on: CUDA when present, as the Warp kernels choose theirs; and the
size of torch's CPU thread pool.

``NEURAL_SHAPES_DEVICE`` (``cpu``, ``cuda:0`` ...) overrides, the same variable :mod:`kernels.device` reads.
Trainers keep their random generators and data on the CPU (so a run draws the same batches on any
device) and move each batch to this device.
"""

from __future__ import annotations

import os

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
