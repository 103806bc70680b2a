"""Files of torch tensors and state dicts (training checkpoints, trained weights): written atomically
with ``torch.save``, read with ``torch.load(weights_only=True)``, which never unpickles arbitrary
objects, so a foreign or corrupt file is refused instead of run."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from backend.errors import NeuralShapesError
from backend.files import read_file_bytes, write_atomically


def save_tensors(path: Path, state: dict) -> None:
    """Write a dict of tensors, state dicts, numbers and strings to ``path`` atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomically(path, buffer.getvalue())


def load_tensors(path: Path, failure: str) -> dict:
    """Read what :func:`save_tensors` wrote; ``failure`` is the message's text for an unreadable file,
    e.g. "not a valid checkpoint"."""
    data = read_file_bytes(path)
    try:
        state = torch.load(io.BytesIO(data), weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or foreign files
        raise NeuralShapesError(f"{path}: {failure} ({type(error).__name__}: {error})".splitlines()[0]) from None
    if not isinstance(state, dict):
        raise NeuralShapesError(f"{path}: {failure} (a {type(state).__name__}, expected a dict)")
    return state
