"""The stopping checks (backend.fitting.checks): each failure named, and the reconstruction check seeing
what the surface error cannot (a shape with a part its source lacks)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from backend.fitting.batched import FitSettings
from backend.fitting.checks import Measured, failed_checks, reconstruction_check
from backend.fitting.pipeline import fit_outcome
from backend.meshes.metrics import surface_error_with_tail, surface_samples
from tests.malformed_files import default_family_shape

TARGETS = FitSettings().targets
OCTAHEDRON = np.array([[0.5, 0, 0], [-0.5, 0, 0], [0, 0.5, 0], [0, -0.5, 0], [0, 0, 0.5], [0, 0, -0.5]], np.float32)
UPPER_FACES = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4]])  # outward, around the top vertex
LOWER_FACES = np.array([[2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])


def test_each_failed_check_is_named_with_its_figure_and_target():
    good = Measured(surface_error=0.002, tail_error=0.008, loss=0.004, fscore=0.99, chamfer=0.006)
    assert failed_checks(good, TARGETS) == []
    bad = Measured(surface_error=0.0041, tail_error=0.05, loss=0.02, fscore=0.91, chamfer=math.inf)
    assert failed_checks(bad, TARGETS) == [
        "surface error 0.0041 > 0.0030",
        "training loss 0.0200 > 0.0100",
        "tail error 0.0500 > 0.0200",
        "F-score 0.910 < 0.950",
        "Chamfer inf > 0.0100",
    ]
    assert failed_checks(Measured(0.002, 0.008), TARGETS) == []  # unmeasured figures do not fail
    assert failed_checks(Measured(0.003012, 0.008), TARGETS) == ["surface error 0.00301 > 0.00300"]  # never "x > x"


@pytest.mark.parametrize(
    "faces, fails",
    [
        (np.concatenate([UPPER_FACES, LOWER_FACES]), False),
        (UPPER_FACES, True),  # the net's lower half is a part the source does not have: a floater
    ],
)
def test_the_reconstruction_check_sees_a_part_the_source_lacks(faces, fails):
    """The hand-made net of |x| + |y| + |z| = 0.5 against the whole octahedron, then against its upper half:
    on the upper half's surface the field is exactly zero (surface error and tail pass), only the
    reconstruction compared both ways shows the extra half."""
    shape = default_family_shape("octahedron")
    points = surface_samples(OCTAHEDRON, faces, 20_000, seed=1)
    mean, tail = surface_error_with_tail(shape.architecture, shape.weights, points)
    assert failed_checks(Measured(mean, tail), TARGETS) == []
    quality = reconstruction_check(shape.architecture, shape.weights, OCTAHEDRON, faces, points, resolution=128)
    failures = failed_checks(Measured(mean, tail, fscore=quality.fscore, chamfer=quality.chamfer), TARGETS)
    if fails:
        assert quality.fscore == pytest.approx(2 / 3, abs=0.03)  # precision 1/2, recall 1
        assert [failure.split()[0] for failure in failures] == ["F-score", "Chamfer"]
    else:
        assert failures == [] and quality.fscore > 0.99


def test_fit_outcome_says_targets_met_or_what_failed():
    metrics = {
        "surface_error": 0.002,
        "surface_error_p99": 0.009,
        "final_loss": 0.004,
        "fscore": 0.97,
        "chamfer": 0.007,
    }
    assert fit_outcome(metrics, TARGETS) == "targets met"
    assert fit_outcome({**metrics, "fscore": 0.5}, TARGETS) == "F-score 0.500 < 0.950"
