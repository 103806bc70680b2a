"""Pieces shared by the project's ``.h5`` formats (neural shapes, model families): the architecture and
weights groups, and validated reads of attributes and datasets.

Readers only touch numeric datasets and string / number attributes and check each one; nothing is ever
unpickled. Failures raise :class:`NeuralShapesError` with a message naming the offending path.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TypeVar

import h5py
import numpy as np

from backend.errors import NeuralShapesError
from backend.network import ACTIVATIONS, OUTPUT_ACTIVATIONS, Architecture, Weights

T = TypeVar("T")


MAX_LAYERS = 64
MAX_WIDTH = 4096


def parse_h5(data: bytes, source: str, what: str, reader: Callable[[h5py.File], T]) -> T:
    """Run ``reader`` on the HDF5 file in ``data``; any failure becomes one line naming ``source``."""
    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            return reader(f)
    except NeuralShapesError as error:
        raise NeuralShapesError(f"{source}: {error}") from None
    except Exception as error:  # h5py raises OSError/KeyError/ValueError for damaged files
        raise NeuralShapesError(f"{source}: not a valid {what} file ({type(error).__name__}: {error})".splitlines()[0]) from None


def attr(group: h5py.Group, key: str, where: str):
    if key not in group.attrs:
        raise NeuralShapesError(f"missing {where}/{key}")
    return group.attrs[key]


def group(f: h5py.Group, key: str) -> h5py.Group:
    if key not in f or not isinstance(f[key], h5py.Group):
        raise NeuralShapesError(f"missing group '{key}'")
    return f[key]


def text(value, where: str) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        raise NeuralShapesError(f"{where} must be text")
    return value


def number(value, where: str, allow_infinite: bool = False, allow_nan: bool = False) -> float:
    array = np.asarray(value)
    valid = array.shape == () and np.issubdtype(array.dtype, np.number)
    if not valid or (np.isnan(array) and not allow_nan) or (np.isinf(array) and not allow_infinite):
        raise NeuralShapesError(f"{where} must be one {'' if allow_infinite else 'finite '}number")
    return float(array)


def check_format(f: h5py.File, format_name: str, version: int, what: str) -> None:
    """The root's ``format`` and ``format_version`` attributes must name this format and version."""
    if text(attr(f, "format", ""), "format") != format_name:
        raise NeuralShapesError(f"not a {what} file (format is not '{format_name}')")
    found = int(number(attr(f, "format_version", ""), "format_version"))
    if found != version:
        raise NeuralShapesError(f"format version {found} is not supported (this tool reads version {version})")


def write_architecture(f: h5py.Group, architecture: Architecture) -> None:
    a = f.create_group("architecture")
    a.attrs["layer_sizes"] = np.asarray(architecture.layer_sizes, dtype=np.int64)
    a.attrs["activation"] = architecture.activation
    a.attrs["output_activation"] = architecture.output_activation
    a.attrs["sine_w0"] = float(architecture.sine_w0)


def read_architecture(f: h5py.Group) -> Architecture:
    a = group(f, "architecture")
    sizes = np.asarray(attr(a, "layer_sizes", "architecture"))
    if sizes.ndim != 1 or len(sizes) < 3 or len(sizes) > MAX_LAYERS or not np.issubdtype(sizes.dtype, np.integer):
        raise NeuralShapesError("architecture/layer_sizes must list 3 to 64 integer sizes")
    width = int(sizes[1])
    if sizes[0] != 3 or sizes[-1] != 1 or not (sizes[1:-1] == width).all() or not 1 <= width <= MAX_WIDTH:
        raise NeuralShapesError(f"architecture/layer_sizes {sizes.tolist()} is not 3 -> equal hidden widths -> 1")
    activation = text(attr(a, "activation", "architecture"), "architecture/activation")
    output_activation = text(attr(a, "output_activation", "architecture"), "architecture/output_activation")
    if activation not in ACTIVATIONS or output_activation not in OUTPUT_ACTIVATIONS:
        raise NeuralShapesError(f"unknown activation '{activation}' or output activation '{output_activation}'")
    return Architecture(
        hidden_layers=len(sizes) - 2,
        width=width,
        activation=activation,
        output_activation=output_activation,
        sine_w0=number(attr(a, "sine_w0", "architecture"), "architecture/sine_w0"),
    )


def write_weights(f: h5py.Group, name: str, weights: Weights, dtype: type = np.float32) -> None:
    """``name/layer_NN/{weight, bias}`` datasets, as ``torch.nn.Linear`` stores them."""
    w = f.create_group(name)
    for layer, (weight, bias) in enumerate(weights):
        g = w.create_group(f"layer_{layer:02d}")
        g.create_dataset("weight", data=np.asarray(weight).astype(dtype))
        g.create_dataset("bias", data=np.asarray(bias).astype(dtype))


def read_weights(f: h5py.Group, name: str, architecture: Architecture) -> Weights:
    """Weights of ``architecture`` from ``name/layer_NN``: exact layer set, shapes, float dtypes, finite values."""
    w = group(f, name)
    sizes = architecture.layer_sizes
    expected = [f"layer_{i:02d}" for i in range(len(sizes) - 1)]
    if sorted(w.keys()) != expected:
        raise NeuralShapesError(f"{name} must hold exactly {len(expected)} layers for layer sizes {sizes}")
    weights: Weights = []
    for layer, key in enumerate(expected):
        fan_in, fan_out = sizes[layer], sizes[layer + 1]
        weight = _float_dataset(w[key], f"{name}/{key}", "weight", (fan_out, fan_in))
        bias = _float_dataset(w[key], f"{name}/{key}", "bias", (fan_out,))
        weights.append((weight, bias))
    return weights


def _float_dataset(layer: h5py.Group, where: str, key: str, shape: tuple[int, ...]) -> np.ndarray:
    where = f"{where}/{key}"
    if not isinstance(layer, h5py.Group) or key not in layer or not isinstance(layer[key], h5py.Dataset):
        raise NeuralShapesError(f"missing dataset {where}")
    dataset = layer[key]
    if dataset.shape != shape:
        raise NeuralShapesError(f"{where} has shape {dataset.shape}, expected {shape}")
    if dataset.dtype not in (np.float16, np.float32):
        raise NeuralShapesError(f"{where} has dtype {dataset.dtype}, expected float32 or float16")
    values = dataset[()].astype(np.float32)
    if not np.isfinite(values).all():
        raise NeuralShapesError(f"{where} holds NaN or infinite values")
    return values


def read_text_attrs(g: h5py.Group, where: str, required: tuple[str, ...]) -> dict[str, str]:
    values = {key: text(g.attrs[key], f"{where}/{key}") for key in g.attrs}
    missing = [key for key in required if key not in values]
    if missing:
        raise NeuralShapesError(f"{where} lacks {', '.join(missing)}")
    return values
