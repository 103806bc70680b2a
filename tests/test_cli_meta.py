"""The command line's model families end to end: meta-train on a generated collection, then fit from
that family file, from a named family, and refusals of bad families."""

from __future__ import annotations

import json

import pytest

from backend.shapes.family_file import read_family
from backend.shapes.shape_file import read_shape
from tests.conftest import SAMPLES, run_cli

pytestmark = pytest.mark.slow

QUICK_FIT = ["--samples", "30000", "--max-steps", "200", "--target", "0.02", "--resolution", "32", "--json"]


def test_meta_train_then_fit_from_the_family(tmp_path):
    collection, family_path = tmp_path / "collection", tmp_path / "family.h5"
    assert run_cli("make-collection", collection, "--count", "12", "--seed", "3").returncode == 0
    result = run_cli(
        "meta-train",
        collection,
        "-o",
        family_path,
        "--steps",
        "4",
        "--meta-batch",
        "2",
        "--inner-steps",
        "2",
        "--inner-batch",
        "256",
        "--samples-per-shape",
        "2048",
        "--exclude-classes",
        "rocket",
        "--name",
        "tiny",
    )
    assert result.returncode == 0, result.stderr
    family = read_family(family_path)
    assert family.name == "tiny" and family.inner_steps == 2 and family.inner_batch == 256
    assert json.loads(family.provenance["settings"])["outer_steps"] == 4
    assert family.provenance["training_shapes"] == "9"  # 11 meshes without the rocket, a quarter (2) held out
    assert family.family_id in result.stdout
    assert not family_path.with_name("family.h5.checkpoint.safetensors").exists()
    assert (collection / "samples-2048-seed0.h5").exists()  # the cache a re-run would reuse

    fitted = run_cli("fit", SAMPLES / "mug.obj", "-o", tmp_path / "out", "--family", family_path, *QUICK_FIT)
    assert fitted.returncode == 0, fitted.stderr
    assert read_shape(tmp_path / "out" / "mug.h5").family_id == family.family_id


def test_fit_from_named_families(tmp_path):
    result = run_cli("fit", SAMPLES / "mug.obj", "-o", tmp_path, "--family", "random:5", *QUICK_FIT)
    assert result.returncode == 0, result.stderr
    assert read_shape(tmp_path / "mug.h5").family_id.startswith("random-relu8x32-seed5-")
    result = run_cli("fit", SAMPLES / "mug.obj", "-o", tmp_path, *QUICK_FIT)
    assert (
        read_shape(tmp_path / "mug.h5").family_id
        == read_family(SAMPLES.parent / "backend/shapes/families/default.h5").family_id
    )


def test_bad_families_are_refused_in_one_line(tmp_path):
    (tmp_path / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    for family, message in (
        (tmp_path / "broken.h5", "not a valid model family file"),
        (tmp_path / "absent.h5", "cannot read file"),
        ("random:-1", "non-negative integer"),
    ):
        result = run_cli("fit", SAMPLES / "mug.obj", "-o", tmp_path / "out", "--family", family, *QUICK_FIT)
        assert result.returncode == 1 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1, (
            result.stderr
        )
        assert not (tmp_path / "out").exists()


def test_meta_train_refuses_bad_collections(tmp_path):
    result = run_cli("meta-train", tmp_path, "-o", tmp_path / "f.h5")
    assert result.returncode == 1 and "cannot read the manifest" in result.stderr
    assert run_cli("make-collection", tmp_path / "c", "--count", "3").returncode == 0
    result = run_cli("meta-train", tmp_path / "c", "-o", tmp_path / "f.h5", "--exclude-classes", "spaceship")
    assert result.returncode == 1 and "unknown classes spaceship" in result.stderr
