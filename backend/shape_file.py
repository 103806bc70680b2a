"""The ``.h5`` neural shape file: writing (atomically) and reading (validated). See docs/format.md.

Never pickles: only numeric datasets and string / number attributes are read, and every one is checked
(presence, shape, dtype, finite values, format version) before a :class:`NeuralShape` is returned.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from backend.errors import NeuralShapesError
from backend.mesh_loading import Similarity
from backend.network import ACTIVATIONS, OUTPUT_ACTIVATIONS, Architecture, Weights

FORMAT_NAME = "neural-shapes/neural-sdf"
FORMAT_VERSION = 1
REQUIRED_METRICS = ("surface_error", "final_loss", "chamfer", "fscore", "fit_seconds", "steps")
PROVENANCE_KEYS = ("source_name", "source_sha256", "tool_version", "created")
MAX_LAYERS = 64
MAX_WIDTH = 4096


@dataclass
class NeuralShape:
    """One fitted shape: weights of its MLP, the frame it lives in, how well it fits and where it came from.

    ``transform`` maps the source mesh frame to the normalised frame the MLP is defined in.
    ``metrics``: surface_error, final_loss, chamfer, fscore (normalised units), fit_seconds, steps.
    """

    name: str
    architecture: Architecture
    family_id: str
    weights: Weights
    transform: Similarity
    metrics: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, str] = field(default_factory=dict)


def shape_to_bytes(shape: NeuralShape, half_precision: bool = False) -> bytes:
    """The ``.h5`` file content of a shape (float16 weights when ``half_precision``)."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        _write(f, shape, np.float16 if half_precision else np.float32)
    return buffer.getvalue()


def write_shape(path: Path, shape: NeuralShape, half_precision: bool = False) -> None:
    """Write a shape to ``path`` atomically: a temporary file in the same folder, then a rename."""
    path = Path(path)
    data = shape_to_bytes(shape, half_precision)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_shape(path: Path) -> NeuralShape:
    """Read and validate a ``.h5`` shape file; :class:`NeuralShapesError` names the file and what is wrong."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise NeuralShapesError(f"{path}: cannot read file ({error.strerror or error})") from None
    return shape_from_bytes(data, source=str(path))


def shape_from_bytes(data: bytes, source: str = "<bytes>") -> NeuralShape:
    """Parse and validate the content of a ``.h5`` shape file."""
    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            return _read(f)
    except NeuralShapesError as error:
        raise NeuralShapesError(f"{source}: {error}") from None
    except Exception as error:  # h5py raises OSError/KeyError/ValueError for damaged files
        raise NeuralShapesError(f"{source}: not a valid neural shape file ({type(error).__name__}: {error})".splitlines()[0]) from None


def _write(f: h5py.File, shape: NeuralShape, dtype: type) -> None:
    arch = shape.architecture
    f.attrs["format"] = FORMAT_NAME
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["name"] = shape.name
    a = f.create_group("architecture")
    a.attrs["layer_sizes"] = np.asarray(arch.layer_sizes, dtype=np.int64)
    a.attrs["activation"] = arch.activation
    a.attrs["output_activation"] = arch.output_activation
    a.attrs["sine_w0"] = float(arch.sine_w0)
    f.create_group("family").attrs["family_id"] = shape.family_id
    t = f.create_group("transform")
    t.attrs["scale"] = float(shape.transform.scale)
    t.attrs["centre"] = np.asarray(shape.transform.centre, dtype=np.float64)
    t.create_dataset("source_to_normalised", data=shape.transform.matrix())
    w = f.create_group("weights")
    for layer, (weight, bias) in enumerate(shape.weights):
        g = w.create_group(f"layer_{layer:02d}")
        g.create_dataset("weight", data=np.asarray(weight).astype(dtype))
        g.create_dataset("bias", data=np.asarray(bias).astype(dtype))
    m = f.create_group("metrics")
    for key, value in shape.metrics.items():
        m.attrs[key] = float(value)
    p = f.create_group("provenance")
    for key, value in shape.provenance.items():
        p.attrs[key] = str(value)


def _attr(group: h5py.Group, key: str, where: str):
    if key not in group.attrs:
        raise NeuralShapesError(f"missing {where}/{key}")
    return group.attrs[key]


def _group(f: h5py.File, key: str) -> h5py.Group:
    if key not in f or not isinstance(f[key], h5py.Group):
        raise NeuralShapesError(f"missing group '{key}'")
    return f[key]


def _text(value, where: str) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        raise NeuralShapesError(f"{where} must be text")
    return value


def _number(value, where: str) -> float:
    array = np.asarray(value)
    if array.shape != () or not np.issubdtype(array.dtype, np.number) or not np.isfinite(array):
        raise NeuralShapesError(f"{where} must be one finite number")
    return float(array)


def _read(f: h5py.File) -> NeuralShape:
    if _text(_attr(f, "format", ""), "format") != FORMAT_NAME:
        raise NeuralShapesError(f"not a neural shape file (format is not '{FORMAT_NAME}')")
    version = int(_number(_attr(f, "format_version", ""), "format_version"))
    if version != FORMAT_VERSION:
        raise NeuralShapesError(f"format version {version} is not supported (this tool reads version {FORMAT_VERSION})")
    name = _text(_attr(f, "name", ""), "name")

    a = _group(f, "architecture")
    sizes = np.asarray(_attr(a, "layer_sizes", "architecture"))
    if sizes.ndim != 1 or len(sizes) < 3 or len(sizes) > MAX_LAYERS or not np.issubdtype(sizes.dtype, np.integer):
        raise NeuralShapesError("architecture/layer_sizes must list 3 to 64 integer sizes")
    width = int(sizes[1])
    if sizes[0] != 3 or sizes[-1] != 1 or not (sizes[1:-1] == width).all() or not 1 <= width <= MAX_WIDTH:
        raise NeuralShapesError(f"architecture/layer_sizes {sizes.tolist()} is not 3 -> equal hidden widths -> 1")
    activation = _text(_attr(a, "activation", "architecture"), "architecture/activation")
    output_activation = _text(_attr(a, "output_activation", "architecture"), "architecture/output_activation")
    if activation not in ACTIVATIONS or output_activation not in OUTPUT_ACTIVATIONS:
        raise NeuralShapesError(f"unknown activation '{activation}' or output activation '{output_activation}'")
    architecture = Architecture(
        hidden_layers=len(sizes) - 2,
        width=width,
        activation=activation,
        output_activation=output_activation,
        sine_w0=_number(_attr(a, "sine_w0", "architecture"), "architecture/sine_w0"),
    )
    family_id = _text(_attr(_group(f, "family"), "family_id", "family"), "family/family_id")

    t = _group(f, "transform")
    scale = _number(_attr(t, "scale", "transform"), "transform/scale")
    centre = np.asarray(_attr(t, "centre", "transform"), dtype=np.float64)
    if not scale > 0 or centre.shape != (3,) or not np.isfinite(centre).all():
        raise NeuralShapesError("transform must have a positive scale and a finite 3-vector centre")
    transform = Similarity(scale=scale, centre=centre)

    w = _group(f, "weights")
    expected = [f"layer_{i:02d}" for i in range(len(sizes) - 1)]
    if sorted(w.keys()) != expected:
        raise NeuralShapesError(f"weights must hold exactly {len(expected)} layers for layer sizes {sizes.tolist()}")
    weights: Weights = []
    for layer, key in enumerate(expected):
        fan_in, fan_out = int(sizes[layer]), int(sizes[layer + 1])
        weight = _weights_array(w[key], "weight", (fan_out, fan_in))
        bias = _weights_array(w[key], "bias", (fan_out,))
        weights.append((weight, bias))

    m = _group(f, "metrics")
    metrics = {key: _number(m.attrs[key], f"metrics/{key}") for key in m.attrs}
    missing = [key for key in REQUIRED_METRICS if key not in metrics]
    if missing:
        raise NeuralShapesError(f"metrics lack {', '.join(missing)}")
    p = _group(f, "provenance")
    provenance = {key: _text(p.attrs[key], f"provenance/{key}") for key in p.attrs}
    missing = [key for key in PROVENANCE_KEYS if key not in provenance]
    if missing:
        raise NeuralShapesError(f"provenance lacks {', '.join(missing)}")
    return NeuralShape(name, architecture, family_id, weights, transform, metrics, provenance)


def _weights_array(group, key: str, shape: tuple[int, ...]) -> np.ndarray:
    where = f"weights/{group.name.rsplit('/', 1)[-1]}/{key}"
    if not isinstance(group, h5py.Group) or key not in group or not isinstance(group[key], h5py.Dataset):
        raise NeuralShapesError(f"missing dataset {where}")
    dataset = group[key]
    if dataset.shape != shape:
        raise NeuralShapesError(f"{where} has shape {dataset.shape}, expected {shape}")
    if dataset.dtype not in (np.float16, np.float32):
        raise NeuralShapesError(f"{where} has dtype {dataset.dtype}, expected float32 or float16")
    values = dataset[()].astype(np.float32)
    if not np.isfinite(values).all():
        raise NeuralShapesError(f"{where} holds NaN or infinite values")
    return values
