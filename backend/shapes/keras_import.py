"""Neural shapes from Keras weights files: the paper's published nets (Davies et al., Thingi10k) as shapes
of our format, so they render, mesh and combine like any shape.

The paper's tool saves each shape with Keras' ``save_weights`` (TensorFlow 2, ``keras_version`` 2.2.4-tf)
and keeps the architecture apart (``key.json``, the model's JSON). Such an ``.h5`` file holds, per Dense
layer ``dense_k``::

    /                     attrs layer_names = [b"dense", b"dense_1", ..., b"dense_8"], backend, keras_version
    /dense_k              attrs weight_names = [b"dense_k/kernel:0", b"dense_k/bias:0"]
    /dense_k/dense_k/kernel:0   float32 (in, out)
    /dense_k/dense_k/bias:0     float32 (out,)

Keras computes ``y = act(x @ kernel + bias)``, so a layer's weight in our ``torch.nn.Linear`` layout is the
kernel transposed: (out, in). Layers are taken in the order of ``layer_names`` (the order Keras loads them
in); without it, the ``dense`` / ``dense_K`` groups by their number (a session's second model starts at
``dense_9``). A whole-model save (``model.save``) keeps the same layout under ``/model_weights`` and the
model's JSON in the root attribute ``model_config``; any optimizer state is ignored.

What the file does not say is assumed as in the paper's code, and recorded in the shape's provenance:

- **Activations**: ReLU hidden layers and a tanh output (the paper's, and what its CUDA renderer hard-codes),
  unless a model JSON (``key.json``, or the file's own ``model_config``) names them: ``relu`` hidden
  layers and a ``tanh`` or ``linear`` output are accepted, anything else (the paper code's ``elu`` option,
  custom layers) is refused rather than evaluated wrongly. The JSON is parsed as data; no Keras code runs.
- **Frame**: the paper's normalisation is ours (a mesh's miniball moved to the origin and scaled to radius
  0.9, ``neuralImplicitTools/src/geometry.py``), and the files store no transform: by default the net's
  input frame is taken as the source frame too (``Similarity(1, 0)``). A known similarity from the source
  mesh's frame (``x_normalised = scale * (x_source - centre)``) can be given instead.
- **Sign**: signed distance, negative inside (the paper's equation 3, ours). A file with the other sign can
  be negated on import (the last layer's weight and bias; exact, as tanh is odd).

Imported nets started from no family of ours (each was trained from its own random start), so their
``family_id`` is :func:`keras_family_id`: ``keras-import-<act><L>x<W>-<12 hex>``, the hash of the
architecture alone. nf2vec operations (embedding, interpolation, search) take only shapes of the family
their model was trained on and refuse these with a message naming both families; fitting a mesh of an
imported shape (``neural-shapes mesh``, then ``fit``) makes a member of the default family.

A Keras file is untrusted input: it is read with :func:`backend.shapes.h5_io.parse_h5` (no links, external
or virtual storage, filters but gzip, nothing oversized; nothing unpickled), then every layer is checked:
names, one kernel and at most one bias, shapes chaining ``3 -> equal widths -> 1``, float dtypes, finite
values and the architecture limits fitting has. Errors are one line naming the file and the cause.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np

from backend import __version__
from backend.errors import NeuralShapesError
from backend.files import read_file_bytes
from backend.shapes.architecture import Architecture, Weights
from backend.shapes.frame import Similarity
from backend.shapes.h5_io import MAX_DATA_BYTES, MAX_TEXT_BYTES, _float_values, parse_h5, text
from backend.shapes.shape_file import QUALITY_METRICS, NeuralShape

IMPORTED_FROM = "keras-hdf5"
MAX_KERAS_FILE_BYTES = MAX_DATA_BYTES + (16 << 20)  # the data parse_h5 allows plus room for HDF5's own structures
MAX_MODEL_JSON_BYTES = MAX_TEXT_BYTES
IDENTITY = Similarity(scale=1.0, centre=np.zeros(3))
_DENSE_GROUP = re.compile(r"dense(?:_(\d{1,9}))?")
# Keras' activation names -> ours (hidden layers, output layer).
_HIDDEN_ACTIVATIONS = {"relu": "relu"}
_OUTPUT_ACTIVATIONS = {"tanh": "tanh", "linear": "none"}


@dataclass(frozen=True)
class DenseActivations:
    """What a Keras model description says of its Dense layers, in order: units and activations (Keras'
    names), and where that came from (``origin``, for the provenance)."""

    units: tuple[int, ...]
    activations: tuple[str, ...]
    origin: str


PAPER_ACTIVATIONS_NOTE = "assumed: the paper's ReLU hidden layers and tanh output"


def keras_family_id(architecture: Architecture) -> str:
    """``keras-import-<act><L>x<W>-<12 hex>``: the family of imported nets of one architecture (the hash
    covers the architecture only; an imported net has no shared initial weights)."""
    digest = hashlib.sha256(repr(architecture).encode()).hexdigest()[:12]
    return f"keras-import-{architecture.activation}{architecture.hidden_layers}x{architecture.width}-{digest}"


def read_model_json(data: bytes | str, origin: str) -> DenseActivations:
    """The Dense layers of a Keras model JSON (``model.to_json()``: ``key.json``, or a whole-model save's
    ``model_config``), parsed as plain data; ``origin`` names it in errors. Input layers are skipped; any
    other layer class is refused (its computation would be lost)."""
    if len(data) > MAX_MODEL_JSON_BYTES:
        raise NeuralShapesError(f"{origin}: {len(data):,} bytes of model JSON (at most {MAX_MODEL_JSON_BYTES:,})")
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise NeuralShapesError(f"{origin}: not a Keras model JSON ({str(error).splitlines()[0]})") from None
    config = document.get("config") if isinstance(document, dict) else None
    layers = config.get("layers") if isinstance(config, dict) else config  # old Sequential: a list of layers
    if not isinstance(layers, list):
        raise NeuralShapesError(f"{origin}: not a Keras model JSON (no config.layers list)")
    units, activations = [], []
    for index, layer in enumerate(layers):
        kind = layer.get("class_name") if isinstance(layer, dict) else None
        if kind == "InputLayer":
            continue
        settings = layer.get("config") if isinstance(layer, dict) else None
        name = settings.get("name", index) if isinstance(settings, dict) else index
        if kind != "Dense" or not isinstance(settings, dict):
            raise NeuralShapesError(f"{origin}: layer {name!r} is a {kind!r}; only Dense layers can be imported")
        activation = settings.get("activation", "linear")
        if isinstance(activation, dict):  # Keras 3 serialises functions as {"class_name": "function", "config": name}
            activation = activation.get("config")
        size = settings.get("units")
        if not isinstance(activation, str) or not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise NeuralShapesError(f"{origin}: Dense layer {name!r} has no units / activation name")
        units.append(size)
        activations.append(activation)
    if not units:
        raise NeuralShapesError(f"{origin}: the model has no Dense layers")
    return DenseActivations(tuple(units), tuple(activations), origin)


def import_keras_file(
    path: Path,
    *,
    model_json: DenseActivations | None = None,
    transform: Similarity = IDENTITY,
    negate: bool = False,
) -> NeuralShape:
    """The neural shape of a Keras weights file (see the module docstring), named after the file's stem.

    ``model_json``: the Dense layers of the model's ``key.json`` (:func:`read_model_json`), which then names
    the activations; without it, a whole-model save's own ``model_config`` does, else the paper's are
    assumed. ``transform``: source frame -> the net's normalised frame (default identity). ``negate``: the
    file's field is positive inside. Raises :class:`NeuralShapesError` naming the file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise NeuralShapesError(f"{path}: cannot read file ({error.strerror or error})") from None
    if size > MAX_KERAS_FILE_BYTES:
        raise NeuralShapesError(
            f"{path}: {size:,} bytes; a Keras weights file may have at most {MAX_KERAS_FILE_BYTES:,}"
        )
    data = read_file_bytes(path)
    return keras_shape_from_bytes(
        data, name=path.stem, source=str(path), model_json=model_json, transform=transform, negate=negate
    )


def keras_shape_from_bytes(
    data: bytes,
    *,
    name: str,
    source: str = "<bytes>",
    model_json: DenseActivations | None = None,
    transform: Similarity = IDENTITY,
    negate: bool = False,
) -> NeuralShape:
    """:func:`import_keras_file` for the file's content ``data``; ``source`` names it in errors and is the
    provenance's ``source_name`` (its last path component)."""
    layers, file_json, keras_info = parse_h5(data, source, "Keras weights", _read_layers)
    description = model_json
    try:
        if description is None and file_json is not None:
            description = read_model_json(file_json, "model_config")
        architecture = _architecture(layers, description)
    except NeuralShapesError as error:
        raise NeuralShapesError(f"{source}: {error}") from None
    weights: Weights = [(np.ascontiguousarray(kernel.T), bias) for _, kernel, bias in layers]
    if negate:  # tanh and the identity are odd: negating the last layer negates the field exactly
        weight, bias = weights[-1]
        weights[-1] = (-weight, -bias)
    nan = float("nan")
    provenance = {
        "source_name": Path(source).name,
        "source_sha256": hashlib.sha256(data).hexdigest(),
        "tool_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "imported_from": IMPORTED_FROM,
        "keras_layers": ", ".join(layer for layer, _, _ in layers),
        "architecture_from": description.origin if description else PAPER_ACTIVATIONS_NOTE,
        "frame": _frame_note(transform),
        **keras_info,
    }
    if negate:
        provenance["sign"] = "negated on import (the file's field was positive inside)"
    return NeuralShape(
        name=name,
        architecture=architecture,
        family_id=keras_family_id(architecture),
        weights=weights,
        transform=transform,
        # Nothing was fitted and there is no reference surface: quality "not measured" (NaN), as for a
        # weight-space in-between; `neural-shapes eval SHAPE.h5 --mesh SOURCE` measures one.
        metrics={**{key: nan for key in QUALITY_METRICS}, "final_loss": 0.0, "fit_seconds": 0.0, "steps": 0.0},
        provenance=provenance,
    )


def _frame_note(transform: Similarity) -> str:
    if transform.scale == 1.0 and not np.any(transform.centre):
        return (
            "assumed: the file's frame is the normalised frame (the paper's: bounding sphere radius 0.9 at the origin)"
        )
    centre = ", ".join(f"{value:.9g}" for value in transform.centre)
    return f"given: scale {transform.scale:.9g}, centre ({centre})"


_Layer = tuple[str, np.ndarray, np.ndarray]  # name, kernel (in, out), bias (out,), float32


def _read_layers(f: h5py.File) -> tuple[list[_Layer], bytes | str | None, dict[str, str]]:
    """The weighted layers in Keras' order, the whole-model JSON (or None) and the file's Keras version."""
    holder = f
    if "model_weights" in f and isinstance(f["model_weights"], h5py.Group):  # a whole-model save
        holder = f["model_weights"]
    where = f"{holder.name.rstrip('/')}/"
    file_json = None
    if "model_config" in f.attrs:
        file_json = f.attrs["model_config"]
        file_json = file_json.item() if isinstance(file_json, np.ndarray) and file_json.size == 1 else file_json
        if not isinstance(file_json, bytes | str):
            raise NeuralShapesError("/ attribute model_config must be text")
    info = {}  # for the provenance only: kept when it is text
    for key in ("keras_version", "backend"):
        value = next((_one(c.attrs[key]) for c in (f, holder) if key in c.attrs), None)
        if isinstance(value, bytes | str):
            info[key] = text(value, key)[:100]
    layers = []
    for layer in _layer_order(holder, where):
        group = holder[layer]
        names = _text_list(group, "weight_names", f"{where}{layer}")
        if names is None:
            raise NeuralShapesError(f"{where}{layer} has no weight_names attribute (not a Keras layer)")
        if names:  # layers without weights (an InputLayer) are skipped, as Keras does
            layers.append(_dense_layer(group, layer, names, f"{where}{layer}"))
    if len(layers) < 2:
        raise NeuralShapesError(f"{len(layers)} Dense layers with weights; a neural SDF needs at least 2")
    return layers, file_json, info


def _layer_order(holder: h5py.Group, where: str) -> list[str]:
    names = _text_list(holder, "layer_names", where)
    if names is None:
        numbered = {}
        for key in holder:
            match = _DENSE_GROUP.fullmatch(key)
            if match and isinstance(holder[key], h5py.Group):
                numbered[int(match.group(1) or 0)] = key
        if not numbered:
            keras3 = isinstance(holder.get("layers"), h5py.Group)
            hint = " (a Keras 3 .weights.h5 file? this reads the Keras 2 / tf.keras layout)" if keras3 else ""
            raise NeuralShapesError(f"no Keras layers: no layer_names attribute and no dense / dense_K groups{hint}")
        return [numbered[number] for number in sorted(numbered)]
    if len(set(names)) != len(names):
        raise NeuralShapesError(f"{where} layer_names lists a layer twice")
    for name in names:
        if name.startswith("/") or name not in holder or not isinstance(holder[name], h5py.Group):
            raise NeuralShapesError(f"layer '{name}' of layer_names has no group {where}{name}")
    return names


def _text_list(holder: h5py.Group, key: str, where: str) -> list[str] | None:
    """A Keras list-of-names attribute: ``key``, or split over ``key0``, ``key1``, ... (as Keras stores lists
    too long for one object header); None when absent."""
    if key in holder.attrs:
        parts = [holder.attrs[key]]
    elif f"{key}0" in holder.attrs:
        parts, chunk = [], 0
        while f"{key}{chunk}" in holder.attrs:
            parts.append(holder.attrs[f"{key}{chunk}"])
            chunk += 1
    else:
        return None
    values = [value for part in parts for value in np.asarray(part, dtype=object).reshape(-1)]
    if not values:
        return []
    if any(not isinstance(value, bytes | str) for value in values):  # Keras writes an empty list as float []
        raise NeuralShapesError(f"{where} attribute {key} must be a list of names")
    return [text(value, f"{where} attribute {key}") for value in values]


def _one(value):
    array = np.asarray(value, dtype=object).reshape(-1)
    return array[0] if array.size == 1 else value


def _dense_layer(group: h5py.Group, layer: str, names: list[str], where: str) -> _Layer:
    found: dict[str, h5py.Dataset] = {}
    for name in names:
        role = name.rsplit("/", 1)[-1].split(":", 1)[0]
        if role not in ("kernel", "bias") or role in found:
            raise NeuralShapesError(f"{where} holds weight '{name}'; a Dense layer holds one kernel and one bias")
        dataset = group.get(name) if not name.startswith("/") else None
        if not isinstance(dataset, h5py.Dataset):
            raise NeuralShapesError(f"missing dataset {where}/{name}")
        found[role] = dataset
    if "kernel" not in found:
        raise NeuralShapesError(f"{where} has no kernel")
    kernel_set = found["kernel"]
    if len(kernel_set.shape) != 2:
        raise NeuralShapesError(f"{kernel_set.name} has shape {kernel_set.shape}, expected (in, out)")
    kernel = _float_values(kernel_set, kernel_set.name, kernel_set.shape)
    fan_out = kernel.shape[1]
    if "bias" in found:
        bias = _float_values(found["bias"], found["bias"].name, (fan_out,))
    else:  # use_bias=False
        bias = np.zeros(fan_out, dtype=np.float32)
    return layer, kernel, bias


def _architecture(layers: list[_Layer], description: DenseActivations | None) -> Architecture:
    """The architecture the kernels spell out (3 -> equal widths -> 1), with the activations of
    ``description`` (checked against the kernels) or the paper's."""
    width = layers[0][1].shape[1]
    for index, (name, kernel, _) in enumerate(layers):
        fan_in = 3 if index == 0 else width
        fan_out = 1 if index == len(layers) - 1 else width
        if kernel.shape != (fan_in, fan_out):
            raise NeuralShapesError(
                f"layer '{name}' has a kernel of shape {kernel.shape}, expected {(fan_in, fan_out)}"
                f" (a neural SDF is 3 -> equal hidden widths -> 1)"
            )
    hidden, output = "relu", "tanh"
    if description is not None:
        sizes = tuple(kernel.shape[1] for _, kernel, _ in layers)
        if description.units != sizes:
            raise NeuralShapesError(
                f"{description.origin} describes Dense layers of {list(description.units)} units,"
                f" the weights have {list(sizes)}"
            )
        *inner, last = description.activations
        unknown = sorted({a for a in inner if a not in _HIDDEN_ACTIVATIONS})
        if unknown or len(set(inner)) != 1 or last not in _OUTPUT_ACTIVATIONS:
            raise NeuralShapesError(
                f"{description.origin}: activations {list(description.activations)}; this tool evaluates relu"
                " hidden layers and a tanh or linear output"
            )
        hidden, output = _HIDDEN_ACTIVATIONS[inner[0]], _OUTPUT_ACTIVATIONS[last]
    try:
        return Architecture(hidden_layers=len(layers) - 1, width=width, activation=hidden, output_activation=output)
    except ValueError as error:
        raise NeuralShapesError(str(error)) from None
