"""The .h5 neural shape file (backend.shapes.shape_file): round trip and every validation failure."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from backend.errors import NeuralShapesError
from backend.shapes.architecture import Architecture, flatten, random_family
from backend.shapes.frame import Similarity
from backend.shapes.shape_file import NeuralShape, read_shape, shape_from_bytes, shape_to_bytes, write_shape

DATA = Path(__file__).parent / "data"


def make_shape(arch: Architecture = Architecture()) -> NeuralShape:
    family = random_family(arch, seed=4)
    return NeuralShape(
        name="thing",
        architecture=arch,
        family_id=family.family_id,
        weights=family.initial_weights,
        transform=Similarity(scale=2.5, centre=np.array([1.0, -2.0, 0.5])),
        metrics={
            "surface_error": 0.002,
            "final_loss": 0.001,
            "chamfer": 0.004,
            "fscore": 0.97,
            "fit_seconds": 12.5,
            "steps": 900,
        },
        provenance={
            "source_name": "thing.obj",
            "source_sha256": "ab" * 32,
            "tool_version": "0.1.0",
            "created": "2026-11-26T00:00:00+00:00",
        },
    )


@pytest.mark.parametrize(
    "arch", [Architecture(), Architecture(hidden_layers=2, width=8, activation="sine", output_activation="none")]
)
def test_round_trip(tmp_path, arch):
    shape = make_shape(arch)
    write_shape(tmp_path / "s.h5", shape)
    back = read_shape(tmp_path / "s.h5")
    assert back.name == shape.name and back.family_id == shape.family_id and back.architecture == arch
    assert back.metrics == shape.metrics and back.provenance == shape.provenance
    np.testing.assert_array_equal(back.transform.centre, shape.transform.centre)
    assert back.transform.scale == shape.transform.scale
    for (w0, b0), (w1, b1) in zip(shape.weights, back.weights):
        np.testing.assert_array_equal(w0, w1)
        np.testing.assert_array_equal(b0, b1)
    assert [p.name for p in tmp_path.iterdir()] == ["s.h5"]  # no temporary files left


def test_float16_option(tmp_path):
    shape = make_shape()
    full, half = shape_to_bytes(shape), shape_to_bytes(shape, half_precision=True)
    assert len(half) < len(full)
    back = shape_from_bytes(half)
    for (w0, _), (w1, _) in zip(shape.weights, back.weights):
        np.testing.assert_allclose(w0, w1, rtol=1e-3, atol=1e-4)


def test_a_default_shape_file_is_near_its_weights_size():
    """30,212 bytes of float32 weights; the rest (names, architecture, frame, metrics, provenance) under 1.8 kB."""
    shape = make_shape()
    shape.name, shape.provenance["source_name"] = "chair_0042", "chair_0042.obj"
    assert Architecture().parameter_count * 4 == 30_212
    assert len(shape_to_bytes(shape)) <= 32_000


def corrupt(tmp_path, edit, data: bytes | None = None) -> str:
    """The message reading a shape file (``data``, by default :func:`make_shape`'s) changed by ``edit`` gives."""
    path = tmp_path / "bad.h5"
    path.write_bytes(data if data is not None else shape_to_bytes(make_shape()))
    with h5py.File(path, "a") as f:
        edit(f)
    with pytest.raises(NeuralShapesError) as info:
        read_shape(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def _set(key, value):
    def edit(f):
        group, _, attr = key.rpartition("/")
        (f[group] if group else f).attrs[attr] = value

    return edit


def _replace_dataset(key, value):
    def edit(f):
        del f[key]
        f[key] = value

    return edit


@pytest.mark.parametrize(
    "edit, expected",
    [
        (_set("format", "something-else"), "not a neural shape file"),
        (_set("format_version", 99), "version 99"),
        (lambda f: f.attrs.__delitem__("name"), "missing /name"),
        (_set("layer_sizes", np.array([3, 32, 16, 1])), "layer_sizes"),
        (_set("activation", "gelu"), "unknown activation"),
        (_set("scale", -1.0), "positive number"),
        (_set("centre", np.array([np.nan, 0, 0])), "finite 3-vector"),
        (lambda f: f.attrs.__delitem__("family_id"), "missing /family_id"),
        (_replace_dataset("weights", np.zeros(7552, np.float32)), "shape (7552,)"),
        (_replace_dataset("weights", np.zeros(7553, np.int32)), "dtype int32"),
        (_replace_dataset("weights", np.full(7553, np.inf, np.float32)), "NaN or infinite"),
        (lambda f: f["weights"].attrs.__delitem__("surface_error"), "weights lacks the metrics surface_error"),
        (_set("weights/steps", np.nan), "weights/steps must be one number"),
        (lambda f: f["provenance"].attrs.__delitem__("source_sha256"), "provenance lacks source_sha256"),
        (lambda f: f.__delitem__("provenance"), "missing group 'provenance'"),
    ],
)
def test_validation_failures(tmp_path, edit, expected):
    assert expected in corrupt(tmp_path, edit)


@pytest.mark.parametrize("data", [b"", b"not hdf5 at all", None])
def test_damaged_files(tmp_path, data):
    path = tmp_path / "damaged.h5"
    if data is None:  # a truncated real file
        write_shape(path, make_shape())
        path.write_bytes(path.read_bytes()[:700])
    else:
        path.write_bytes(data)
    with pytest.raises(NeuralShapesError, match="damaged.h5"):
        read_shape(path)
    with pytest.raises(NeuralShapesError, match="cannot read"):
        read_shape(tmp_path / "missing.h5")


def test_format_version_1_files_are_still_read():
    """tests/data/thing_v1.h5: :func:`make_shape` as the tool wrote it before format version 2 (per-layer
    weight groups; architecture, family, transform and metrics in groups)."""
    old, shape = read_shape(DATA / "thing_v1.h5"), make_shape()
    assert (old.name, old.architecture, old.family_id, old.metrics, old.provenance) == (
        shape.name,
        shape.architecture,
        shape.family_id,
        shape.metrics,
        shape.provenance,
    )
    assert old.transform.scale == shape.transform.scale
    np.testing.assert_array_equal(old.transform.centre, shape.transform.centre)
    np.testing.assert_array_equal(flatten(old.weights), flatten(shape.weights))


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda f: f.__delitem__("weights/layer_03"), "exactly 9 layers"),
        (_replace_dataset("weights/layer_00/weight", np.zeros((32, 4), np.float32)), "shape (32, 4)"),
        (_set("architecture/activation", "gelu"), "unknown activation"),
        (_set("transform/scale", -1.0), "positive number"),
        (lambda f: f.__delitem__("family"), "missing group 'family'"),
        (lambda f: f["metrics"].attrs.__delitem__("surface_error"), "metrics lacks the metrics surface_error"),
    ],
)
def test_format_version_1_files_are_validated(tmp_path, edit, expected):
    assert expected in corrupt(tmp_path, edit, (DATA / "thing_v1.h5").read_bytes())
