"""The ``.h5`` neural shape file: writing (atomically) and reading (validated). See docs/format.md.

Never pickles: only numeric datasets and string / number attributes are read, and every one is checked
(presence, shape, dtype, finite values, format version) before a :class:`NeuralShape` is returned.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from backend.errors import NeuralShapesError
from backend.files import read_file_bytes, write_atomically
from backend.shapes.architecture import Architecture, Weights
from backend.shapes.frame import Similarity
from backend.shapes.h5_io import (
    attr,
    check_format,
    group,
    new_group,
    new_h5_file,
    number,
    parse_h5,
    read_architecture,
    read_layered_weights,
    read_text_attrs,
    read_weights,
    text,
    text_value,
    write_architecture,
    write_text_attrs,
    write_weights,
)

FORMAT_NAME = "neural-shapes/neural-sdf"
FORMAT_VERSION = 2  # written; version 1 (docs/format.md) is still read
READABLE_VERSIONS = (1, 2)
REQUIRED_METRICS = ("surface_error", "final_loss", "chamfer", "fscore", "fit_seconds", "steps")
QUALITY_METRICS = ("surface_error", "chamfer", "fscore")  # measured against a reference surface
PROVENANCE_KEYS = ("source_name", "source_sha256", "tool_version", "created")


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
    with new_h5_file(buffer) as f:
        _write(f, shape, np.float16 if half_precision else np.float32)
    return buffer.getvalue()


def write_shape(path: Path, shape: NeuralShape, half_precision: bool = False) -> None:
    """Write a shape to ``path`` atomically: a temporary file in the same folder, then a rename."""
    write_atomically(Path(path), shape_to_bytes(shape, half_precision))


def read_shape(path: Path) -> NeuralShape:
    """Read and validate a ``.h5`` shape file; :class:`NeuralShapesError` names the file and what is wrong."""
    return shape_from_bytes(read_file_bytes(path), source=str(path))


def shape_from_bytes(data: bytes, source: str = "<bytes>") -> NeuralShape:
    """Parse and validate the content of a ``.h5`` shape file."""
    return parse_h5(data, source, "neural shape", _read)


def _write(f: h5py.File, shape: NeuralShape, dtype: type) -> None:
    f.attrs["format"] = text_value(FORMAT_NAME)
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["name"] = text_value(shape.name)
    f.attrs["family_id"] = text_value(shape.family_id)
    write_architecture(f, shape.architecture)
    f.attrs["scale"] = float(shape.transform.scale)
    f.attrs["centre"] = np.asarray(shape.transform.centre, dtype=np.float64)
    weights = write_weights(f, "weights", shape.weights, dtype)
    for key, value in shape.metrics.items():  # how well these weights fit: on the weights themselves
        weights.attrs[key] = float(value)
    write_text_attrs(new_group(f, "provenance"), shape.provenance)


def _read(f: h5py.File) -> NeuralShape:
    version = check_format(f, FORMAT_NAME, READABLE_VERSIONS, "neural shape")
    name = text(attr(f, "name", ""), "name")
    if version == 1:  # architecture, family, transform and metrics in groups of their own, weights per layer
        architecture = read_architecture(group(f, "architecture"), "architecture")
        family_id = text(attr(group(f, "family"), "family_id", "family"), "family/family_id")
        transform = _read_transform(group(f, "transform"), "transform")
        weights = read_layered_weights(f, "weights", architecture)
        metrics_holder, metrics_path = group(f, "metrics"), "metrics"
    else:
        architecture = read_architecture(f)
        family_id = text(attr(f, "family_id", ""), "family_id")
        transform = _read_transform(f, "")
        weights = read_weights(f, "weights", architecture)
        metrics_holder, metrics_path = f["weights"], "weights"

    # Chamfer is infinite for a shape whose zero level set is empty: a valid, if poor, result. Quality
    # metrics are NaN for a shape made without a reference surface (a weight-space in-between).
    metrics = {
        key: number(value, f"{metrics_path}/{key}", allow_infinite=True, allow_nan=key in QUALITY_METRICS)
        for key, value in metrics_holder.attrs.items()
    }
    missing = [key for key in REQUIRED_METRICS if key not in metrics]
    if missing:
        raise NeuralShapesError(f"{metrics_path} lacks the metrics {', '.join(missing)}")
    provenance = read_text_attrs(group(f, "provenance"), "provenance", PROVENANCE_KEYS)
    return NeuralShape(name, architecture, family_id, weights, transform, metrics, provenance)


def _read_transform(holder: h5py.Group, where: str) -> Similarity:
    path = f"{where}/" if where else ""
    scale = number(attr(holder, "scale", where), f"{path}scale")
    centre = np.asarray(attr(holder, "centre", where), dtype=np.float64)
    if not scale > 0 or centre.shape != (3,) or not np.isfinite(centre).all():
        raise NeuralShapesError(f"{path}scale and centre must be a positive number and a finite 3-vector")
    return Similarity(scale=scale, centre=centre)
