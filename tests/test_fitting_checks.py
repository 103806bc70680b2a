"""The stopping checks (backend.fitting.checks): each failure named, and the reconstruction check seeing
what the surface error cannot (a shape with a part its source lacks)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh

from backend.fitting.batched import FitSettings
from backend.fitting.checks import Measured, evaluate, failed_checks, source_field_quality
from backend.fitting.pipeline import fit_and_escalate, fit_outcome
from backend.meshes.loading import normalise_mesh
from backend.meshes.metrics import surface_error_with_tail, surface_samples
from backend.shapes.architecture import Architecture, random_family
from kernels.mesh_sdf import SignMethod
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
    evaluation = evaluate(shape.architecture, shape.weights, OCTAHEDRON, faces, points, resolution=128)
    assert (evaluation.surface_error, evaluation.tail_error) == (mean, tail)
    failures = failed_checks(evaluation.measured(), TARGETS)
    if fails:
        assert evaluation.fscore == pytest.approx(2 / 3, abs=0.03)  # precision 1/2, recall 1
        assert [failure.split()[0] for failure in failures] == ["F-score", "Chamfer"]
    else:
        assert failures == [] and evaluation.fscore > 0.99


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


def _sphere_with_a_sheet() -> tuple[np.ndarray, np.ndarray]:
    """A closed sphere and, beside it, an open square sheet: a mesh a signed field cannot hold whole."""
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    sheet_vertices = np.array([[0.8, -0.4, -0.4], [0.8, 0.4, -0.4], [0.8, 0.4, 0.4], [0.8, -0.4, 0.4]])
    vertices = np.concatenate([sphere.vertices, sheet_vertices])
    faces = np.concatenate([sphere.faces, len(sphere.vertices) + np.array([[0, 1, 2], [0, 2, 3]])])
    return vertices, faces


def test_the_source_field_bound_is_exact_for_a_solid_and_misses_an_open_sheet():
    """The bound is what a perfect fit reaches: a closed sphere's own field reconstructs it; beside an open
    sheet (no inside for the winding number) the field loses the sheet, so its F-score falls by about the
    sheet's share of the area (0.64 of 3.78)."""
    icosphere = trimesh.creation.icosphere(subdivisions=3)
    sphere = normalise_mesh(icosphere.vertices, icosphere.faces, name="sphere")
    points = surface_samples(sphere.vertices, sphere.faces, 5000, seed=1)
    solid = source_field_quality(sphere.vertices, sphere.faces, points, 64, SignMethod.WINDING_NUMBER)
    assert solid.fscore > 0.99 and solid.chamfer < 0.01
    mixed = normalise_mesh(*_sphere_with_a_sheet(), name="mixed")
    points = surface_samples(mixed.vertices, mixed.faces, 5000, seed=1)
    bound = source_field_quality(mixed.vertices, mixed.faces, points, 64, SignMethod.WINDING_NUMBER)
    assert 0.7 < bound.fscore < 0.93
    as_shell = source_field_quality(mixed.vertices, mixed.faces, points, 64, SignMethod.NONE, shell=0.02)
    assert as_shell.fscore > 0.95  # a shell around every face holds the sheet too


def test_a_shape_no_net_can_hold_says_so_and_is_not_escalated():
    """A mesh whose own field fails the reconstruction check gets the bound in its metrics and outcome, and
    ``--quality high`` does not spend larger nets on it."""
    mixed = normalise_mesh(*_sphere_with_a_sheet(), name="mixed")
    quick = FitSettings(samples=50_000, max_steps=300, eval_every=100)
    escalation = (Architecture(hidden_layers=2, width=16),)
    [fit] = fit_and_escalate(
        random_family(Architecture(hidden_layers=4, width=32)), [mixed], quick, escalation=escalation, resolution=64
    )
    assert fit.shape.metrics["source_fscore"] < 0.95
    assert "no net can pass at 64^3: the source's own field reaches F-score" in fit.shape.provenance["fit_outcome"]
    assert "escalation" not in fit.shape.provenance  # one net tried
    assert fit.shape.architecture.hidden_layers == 4
