"""Files of torch tensors and nested state (training checkpoints, trained weights, optimiser state) as
``.safetensors``: the tensors as safetensors stores them (raw bytes, shape, dtype), everything else as a
JSON tree in the file's metadata that names each tensor by its key. Nothing is ever unpickled, so a
foreign or corrupt file can only be refused, never run.

The tree keeps what ``load_state_dict`` needs back exactly: dicts with ``int`` keys (optimiser state),
tuples apart from lists (Adam's ``betas``), ints apart from floats and bools, ``None``. Each dict, list
and tuple is tagged (``{"dict": [[key, value], ...]}``, ``{"list": [...]}``, ``{"tuple": [...]}``,
``{"tensor": key}``), so no value stored in the tree can be mistaken for a tag.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from backend.errors import NeuralShapesError
from backend.files import read_file_bytes, write_atomically

METADATA_KEY = "neural-shapes/state"
_HEADER_LENGTH_BYTES = 8  # safetensors: a little-endian u64 header length, then the JSON header


def save_tensors(path: Path, state: dict) -> None:
    """Write a dict of tensors, state dicts, numbers, strings, lists and tuples to ``path`` atomically.

    Dict keys must be ``str`` or ``int``; anything else is a ``TypeError`` (a bug of the caller).
    """
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, tensors)
    data = safetensors.torch.save(tensors, metadata={METADATA_KEY: json.dumps(tree)})
    write_atomically(path, data)


def load_tensors(path: Path, failure: str) -> dict:
    """Read what :func:`save_tensors` wrote; ``failure`` is the message's text for an unreadable file,
    e.g. "not a valid checkpoint"."""
    data = read_file_bytes(path)
    try:
        tensors = safetensors.torch.load(data)
        state = _decode(json.loads(_metadata(data)[METADATA_KEY]), tensors)
    except Exception as error:  # safetensors, json and the tree walk raise many types for foreign files
        raise NeuralShapesError(f"{path}: {failure} ({type(error).__name__}: {error})".splitlines()[0]) from None
    if not isinstance(state, dict):
        raise NeuralShapesError(f"{path}: {failure} (a {type(state).__name__}, expected a dict)")
    return state


def _encode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        key = str(len(tensors))
        # A copy each: safetensors refuses tensors that share storage (views, tied weights).
        tensors[key] = value.detach().cpu().contiguous().clone()
        return {"tensor": key}
    if isinstance(value, dict):
        if not all(isinstance(key, (str, int)) and not isinstance(key, bool) for key in value):
            raise TypeError(f"dict keys must be str or int, got {[type(key).__name__ for key in value]}")
        return {"dict": [[key, _encode(item, tensors)] for key, item in value.items()]}
    if isinstance(value, (list, tuple)):
        return {type(value).__name__: [_encode(item, tensors) for item in value]}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in a tensor file")


def _decode(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if not isinstance(node, dict):
        if node is not None and not isinstance(node, (str, int, float, bool)):
            raise ValueError(f"unexpected {type(node).__name__} in the state tree")
        return node
    if len(node) != 1:
        raise ValueError(f"malformed state tree node with keys {sorted(node)[:4]}")
    ((tag, content),) = node.items()
    if tag == "tensor":
        return tensors[content]
    if tag == "dict":
        return {_key(key): _decode(item, tensors) for key, item in content}
    if tag in ("list", "tuple") and isinstance(content, list):
        items = [_decode(item, tensors) for item in content]
        return items if tag == "list" else tuple(items)
    raise ValueError(f"unknown state tree tag {tag!r}")


def _key(key: Any) -> str | int:
    if not isinstance(key, (str, int)) or isinstance(key, bool):
        raise ValueError(f"dict key {key!r} is not a str or an int")
    return key


def _metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's JSON header (safetensors.torch.load drops it)."""
    length = int.from_bytes(data[:_HEADER_LENGTH_BYTES], "little")
    header = json.loads(data[_HEADER_LENGTH_BYTES : _HEADER_LENGTH_BYTES + length])
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict) or METADATA_KEY not in metadata:
        raise ValueError("a safetensors file without this project's state metadata")
    return metadata
