"""The .h5 neural shape file (backend.shapes.shape_file): round trip and every validation failure."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from backend.errors import NeuralShapesError
from backend.shapes.architecture import Architecture, random_family
from backend.shapes.frame import Similarity
from backend.shapes.shape_file import NeuralShape, read_shape, shape_from_bytes, shape_to_bytes, write_shape


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


def test_transform_matrix_is_stored(tmp_path):
    write_shape(tmp_path / "s.h5", make_shape())
    with h5py.File(tmp_path / "s.h5") as f:
        matrix = f["transform/source_to_normalised"][()]
    point = np.array([1.0, -2.0, 0.5, 1.0])  # the centre maps to the origin
    np.testing.assert_allclose(matrix @ point, [0, 0, 0, 1])


def corrupt(tmp_path, edit) -> str:
    path = tmp_path / "bad.h5"
    write_shape(path, make_shape())
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
        (_set("architecture/layer_sizes", np.array([3, 32, 16, 1])), "layer_sizes"),
        (_set("architecture/activation", "gelu"), "unknown activation"),
        (_set("transform/scale", -1.0), "positive scale"),
        (_set("transform/centre", np.array([np.nan, 0, 0])), "finite 3-vector"),
        (lambda f: f.__delitem__("weights/layer_03"), "exactly 9 layers"),
        (_replace_dataset("weights/layer_00/weight", np.zeros((32, 4), np.float32)), "shape (32, 4)"),
        (_replace_dataset("weights/layer_00/weight", np.zeros((32, 3), np.int32)), "dtype int32"),
        (_replace_dataset("weights/layer_02/bias", np.full(32, np.inf, np.float32)), "NaN or infinite"),
        (lambda f: f["metrics"].attrs.__delitem__("surface_error"), "metrics lack surface_error"),
        (_set("metrics/steps", np.nan), "metrics/steps must be one number"),
        (lambda f: f["provenance"].attrs.__delitem__("source_sha256"), "provenance lacks source_sha256"),
        (lambda f: f.__delitem__("family"), "missing group 'family'"),
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
