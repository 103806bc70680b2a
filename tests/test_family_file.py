"""Model family files (backend.shapes.family_file): round trips, refusal of corrupt files, and family names."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from backend.errors import NeuralShapesError
from backend.shapes.architecture import Architecture, ModelFamily, random_family
from backend.shapes.family_file import DEFAULT_FAMILY_FILE, read_family, resolve_family, write_family


def meta_family() -> ModelFamily:
    start = random_family(seed=3)
    rates = [(np.full_like(w, 0.01), np.full_like(b, 0.02)) for w, b in start.initial_weights]
    return ModelFamily("meta-test", start.architecture, start.initial_weights, rates, 5, 2048, {"method": "Meta-SGD"})


@pytest.mark.parametrize("family", [meta_family(), random_family(Architecture.for_activation("sine", 3, 16), seed=2)])
def test_round_trip(tmp_path, family):
    write_family(tmp_path / "f.h5", family)
    back = read_family(tmp_path / "f.h5")
    assert back.family_id == family.family_id and back.architecture == family.architecture
    assert (back.inner_steps, back.inner_batch, back.provenance) == (
        family.inner_steps,
        family.inner_batch,
        family.provenance,
    )
    assert back.is_meta_learned == family.is_meta_learned
    for (a, b), (c, d) in zip(back.initial_weights, family.initial_weights):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    if family.inner_learning_rates is not None:
        np.testing.assert_array_equal(back.inner_learning_rates[0][0], family.inner_learning_rates[0][0])


def _damage_nan(f):
    f["initial_weights"][0] = np.nan


def _damage_shape(f):
    del f["inner_learning_rates"]
    f.create_dataset("inner_learning_rates", data=np.zeros(7, np.float32))


def _damage_altered(f):
    f["initial_weights"][200] += 1.0


def _damage_rates_missing(f):
    del f["inner_learning_rates"]


def _damage_steps(f):
    f.attrs["inner_steps"] = -1


def _damage_format(f):
    f.attrs["format"] = "neural-shapes/neural-sdf"


def _damage_version(f):
    f.attrs["format_version"] = 99


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_damage_nan, "NaN or infinite"),
        (_damage_shape, "has shape"),
        (_damage_altered, "does not match its weights"),
        (_damage_rates_missing, "do not match the stored inner learning rates"),
        (_damage_steps, "inner_steps -1"),
        (_damage_format, "not a model family file"),
        (_damage_version, "format version 99"),
    ],
)
def test_corrupt_files_are_refused_with_the_cause(tmp_path, damage, message):
    path = tmp_path / "f.h5"
    write_family(path, meta_family())
    with h5py.File(path, "r+") as f:
        damage(f)
    with pytest.raises(NeuralShapesError, match=message) as error:
        read_family(path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


@pytest.mark.parametrize("content", [b"", b"\x89HDF\r\n\x1a\n truncated", b"plain text"])
def test_unreadable_files_are_refused(tmp_path, content):
    path = tmp_path / "f.h5"
    path.write_bytes(content)
    with pytest.raises(NeuralShapesError, match="not a valid model family file"):
        read_family(path)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(NeuralShapesError, match="cannot read file"):
        read_family(tmp_path / "absent.h5")


def test_family_names():
    assert resolve_family(None).family_id == read_family(DEFAULT_FAMILY_FILE).family_id
    assert resolve_family("default").is_meta_learned
    assert resolve_family("random").family_id == random_family(seed=0).family_id
    assert resolve_family("random:7").family_id == random_family(seed=7).family_id
    sine = Architecture.for_activation("sine")
    assert resolve_family(None, sine).family_id == random_family(sine, 0).family_id  # no bundled SIREN family
    with pytest.raises(NeuralShapesError, match="non-negative integer"):
        resolve_family("random:x")


def test_format_version_1_files_are_still_read():
    """tests/data/family_v1.h5: a 2 x 8 meta-learned family as the tool wrote it before format version 2."""
    family = read_family(Path(__file__).parent / "data" / "family_v1.h5")
    assert family.architecture == Architecture(hidden_layers=2, width=8) and family.is_meta_learned
    np.testing.assert_array_equal(
        family.initial_weights[2][0], random_family(family.architecture, seed=3).initial_weights[2][0]
    )
    np.testing.assert_array_equal(family.inner_learning_rates[1][1], np.full(8, 0.02, np.float32))


def test_family_file_of_another_architecture_is_refused(tmp_path):
    write_family(tmp_path / "f.h5", meta_family())
    with pytest.raises(NeuralShapesError, match="is not the requested"):
        resolve_family(tmp_path / "f.h5", Architecture(hidden_layers=4))
