"""Real fits (backend.fitting.batched): a small shape reaches a stated surface error; batched equals single in quality."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
import trimesh

from backend.errors import Cancelled
from backend.fitting.batched import FitSettings, fit_shapes, sample_shape, train_shapes
from backend.fitting.inner_loop import draw_samples
from backend.fitting.pipeline import evaluate_shape, fit_and_escalate, fit_and_evaluate
from backend.meshes.loading import normalise_mesh
from backend.meshes.metrics import surface_error, surface_samples
from backend.meshes.sampling import SHELL_HALF_THICKNESS
from backend.meshes.visibility import visible_surface
from backend.shapes.architecture import Architecture, random_family

QUICK = FitSettings(samples=100_000, batch_size=4096, eval_every=50, max_steps=1500, target_surface_error=0.005)


def true_error(family, result, mesh) -> float:
    points = surface_samples(mesh.vertices, mesh.faces, 100_000, seed=11)
    return surface_error(family.architecture, result.weights, points)


@pytest.fixture(scope="module")
def meshes():
    return [
        normalise_mesh(
            trimesh.creation.icosphere(subdivisions=4).vertices,
            trimesh.creation.icosphere(subdivisions=4).faces,
            name="sphere",
        ),
        normalise_mesh(trimesh.creation.box().vertices, trimesh.creation.box().faces, name="box"),
        normalise_mesh(*_torus(), name="torus"),
    ]


def _torus():
    t = trimesh.creation.torus(0.6, 0.25, major_sections=96, minor_sections=48)
    return t.vertices, t.faces


def test_sphere_reaches_target_in_bounded_steps(meshes):
    family = random_family()
    events = []
    # QUICK's surface error 0.005 puts F@0.01 near 0.95 (the 99th percentile is about 3x the mean), so whether a
    # fit passes that check by 1,500 steps turned on rounding: with a busy process beside it, SharedCores' one
    # thread took another path, stalled at F 0.93 and stopped. 0.9 is the F-score that surface error implies.
    settings = replace(QUICK, target_fscore=0.9)
    [result] = fit_shapes(family, meshes[:1], settings, progress=events.append)
    assert result.stop_reason == "target reached"
    assert result.steps <= settings.max_steps
    assert true_error(family, result, meshes[0]) < 0.0055  # fresh surface points, as the metric is defined
    stages = [e.stage for e in events]
    assert stages[0] == "sampling" and "fitting" in stages and stages[-1] == "done"


def test_batched_fit_matches_single_fits(meshes):
    family = random_family(Architecture(hidden_layers=4, width=32))
    settings = FitSettings(samples=50_000, batch_size=2048, eval_every=100, max_steps=300, target_surface_error=0.0)
    batched = fit_shapes(family, meshes, settings)
    for mesh, together in zip(meshes, batched):
        [alone] = fit_shapes(family, [mesh], settings)
        e_together, e_alone = true_error(family, together, mesh), true_error(family, alone, mesh)
        assert together.steps == alone.steps == 300
        assert e_together < 1.3 * e_alone + 1e-3, (mesh.name, e_together, e_alone)


def test_each_shape_of_a_batch_reports_its_own_cost(meshes):
    """fit_seconds is a shape's sampling plus its share of the batched steps: a batch's shapes add up to its
    wall time instead of each reporting all of it (issue 16)."""
    family = random_family(Architecture(hidden_layers=2, width=16))
    short = FitSettings(samples=20_000, batch_size=1024, eval_every=50, max_steps=100, target_surface_error=0.0)
    data = [replace(sample_shape(mesh, short, index), sample_seconds=0.0) for index, mesh in enumerate(meshes)]
    started = time.perf_counter()
    results = train_shapes(family, data, short)
    wall = time.perf_counter() - started
    assert sum(r.fit_seconds for r in results) == pytest.approx(wall, rel=0.1, abs=0.05)
    assert all(r.fit_seconds < 0.75 * wall for r in results)


def test_training_starts_from_the_weights_given(meshes):
    """train_shapes(start=...) begins at those weights (the completion's fuse fit starts from the partial's net)."""
    family = random_family(Architecture(hidden_layers=2, width=16))
    other = random_family(Architecture(hidden_layers=2, width=16), seed=7).initial_weights
    one_step = FitSettings(samples=20_000, batch_size=1024, eval_every=1, max_steps=1, learning_rate=1e-9)
    data = sample_shape(meshes[0], one_step, 0)
    [moved] = train_shapes(family, [data], one_step, start=[other])
    [default] = train_shapes(family, [data], one_step)
    for (weight, bias), (start_weight, start_bias), (family_weight, _) in zip(
        moved.weights, other, family.initial_weights
    ):
        np.testing.assert_allclose(weight, start_weight, atol=1e-6)
        np.testing.assert_allclose(bias, start_bias, atol=1e-6)
        assert not np.allclose(start_weight, family_weight)
    np.testing.assert_allclose(default.weights[0][0], family.initial_weights[0][0], atol=1e-6)


def test_cancel():
    cancel = threading.Event()
    cancel.set()
    mesh = trimesh.creation.box()
    with pytest.raises(Cancelled):
        fit_shapes(random_family(), [normalise_mesh(mesh.vertices, mesh.faces, name="box")], QUICK, cancel=cancel)


def test_fit_and_evaluate_yields_each_shape_with_its_metrics(meshes):
    """The one fit -> evaluate -> metrics path of convert_files and the service's fit jobs."""
    family = random_family(Architecture(hidden_layers=2, width=16))
    settings = FitSettings(samples=20_000, batch_size=1024, eval_every=50, max_steps=50, target_surface_error=0.0)
    slot = _CountingSlot()
    evaluating, cancel = [], threading.Event()
    fits = fit_and_evaluate(
        family,
        meshes[:2],
        settings,
        resolution=24,
        source_names=["a.obj", "b.obj"],
        evaluating=evaluating.append,
        cancel=cancel,
        compute_slot=slot,
    )
    first = next(fits)
    assert (first.index, first.error, evaluating, slot.entered) == (0, None, [0], 1)
    assert {"surface_error", "surface_error_p99", "chamfer", "fscore", "final_loss", "steps"} <= set(
        first.shape.metrics
    )
    assert first.shape.provenance["source_name"] == "a.obj" and len(first.reconstruction.faces) > 0
    assert "surface error" in first.shape.provenance["fit_outcome"]  # 50 steps: short of the targets, and says so
    cancel.set()  # between meshes: the second is not evaluated
    with pytest.raises(Cancelled, match="fit cancelled"):
        next(fits)
    assert evaluating == [0]


def test_a_shape_done_is_reported_with_the_measurement_that_decided_it(meshes):
    """The fit's last check measures the shape as its report does (the report's 100 K surface points and its
    reconstruction) and that measurement is the report, not a second one on other points that could fall on
    the other side of a target: done means "targets met", and re-measuring the shape gives the same figures."""
    settings = replace(QUICK, target_fscore=0.9)  # reachable by the sphere in its step budget (see above)
    slot = _CountingSlot()
    [fit] = fit_and_evaluate(random_family(), meshes[:1], settings, resolution=64, compute_slot=slot)
    assert fit.shape.provenance["fit_outcome"] == "targets met" and slot.entered == 0  # not measured again
    again = evaluate_shape(fit.shape, visible_surface(meshes[0]), resolution=64)
    assert {key: fit.shape.metrics[key] for key in again.metrics} == again.metrics
    assert len(fit.reconstruction.faces) == len(again.reconstruction.faces)


class _CountingSlot:
    """A stand-in for the service's compute queue: counts the evaluations run inside it."""

    def __init__(self):
        self.entered = 0

    def __enter__(self):
        self.entered += 1

    def __exit__(self, *exc):
        return None


def test_shapes_short_of_the_targets_are_fitted_again_with_the_next_net(meshes):
    """fit_and_escalate: a shape that meets the targets keeps the first net; one that cannot (here the
    targets are out of reach) is fitted again with each larger net, keeps the best fit (the higher
    F-score) and says in its provenance what each net reached."""
    small, larger = Architecture(hidden_layers=1, width=4), Architecture(hidden_layers=2, width=32)
    quick = FitSettings(samples=20_000, batch_size=1024, eval_every=50, max_steps=100)
    easy = replace(
        quick,
        target_surface_error=1.0,
        target_loss=1.0,
        target_tail_error=1.0,
        target_fscore=0.0,
        target_chamfer=math.inf,
    )
    [kept] = fit_and_escalate(random_family(small), meshes[:1], easy, escalation=(larger,), resolution=32)
    assert kept.shape.architecture == small and "escalation" not in kept.shape.provenance

    events = []
    impossible = replace(quick, target_surface_error=0.0)
    [best] = fit_and_escalate(
        random_family(small), meshes[2:], impossible, escalation=(larger,), resolution=32, progress=events.append
    )
    steps = best.shape.provenance["escalation"].split(" | ")
    assert [step.split(":")[0] for step in steps] == [small.describe(), larger.describe()]
    assert all("surface error" in step for step in steps)
    assert best.shape.architecture == larger and best.index == 0  # the 2x32 net holds the torus far better
    assert {event.shape_index for event in events} == {0}


def test_a_shape_whose_reconstruction_checks_stop_gaining_gives_up(meshes):
    """A net too small for the torus passes loose cheap checks but never the reconstruction check: after
    ``check_patience`` checks without a better F-score the fit stops instead of running to the step limit."""
    loose = FitSettings(samples=20_000, batch_size=1024, eval_every=50, max_steps=5000, check_every=2)
    loose = replace(loose, target_surface_error=1.0, target_loss=1.0, target_tail_error=1.0)
    [result] = fit_shapes(random_family(Architecture(hidden_layers=1, width=2)), meshes[2:], loose)
    assert result.stop_reason == "stopped improving" and result.steps < 2500, (result.stop_reason, result.steps)
    assert "F-score" in result.failed_checks[0]


def test_a_single_open_sheet_is_fitted_as_a_thin_shell():
    """A square sheet has no inside (its winding number stays below 0.5): it is fitted as a solid shell of
    half thickness SHELL_HALF_THICKNESS around it, and measured against the sheet thickened by that."""
    square = normalise_mesh(
        [[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 1.0, 0.0]], [[0, 1, 2], [0, 2, 3]], name="sheet"
    )
    # The default width: a 4x32 net stalled at surface error 0.0034 with one torch thread (as in a full run);
    # 8x32 meets the targets in 500-950 steps with one or two threads and seeds 1-3.
    settings = FitSettings(samples=50_000, batch_size=2048, eval_every=50, max_steps=6000)
    [fit] = fit_and_evaluate(random_family(Architecture()), [square], settings, resolution=128)
    assert fit.shape.metrics["shell"] == SHELL_HALF_THICKNESS
    assert fit.shape.provenance["fit_outcome"] == "targets met", fit.shape.provenance["fit_outcome"]
    faces_at = np.median(np.abs(fit.reconstruction.vertices[:, 2]))  # the plate's two faces, normalised frame
    assert faces_at == pytest.approx(SHELL_HALF_THICKNESS, abs=0.003)


def test_drawing_for_some_shapes_gathers_from_their_pools():
    """draw_samples(rows=...) draws what drawing from a copy of those shapes' pools draws, without the copy."""
    points, sdf = torch.rand(4, 1000, 3), torch.rand(4, 1000)
    rows = torch.tensor([3, 1])
    direct = draw_samples(points, sdf, 64, torch.Generator().manual_seed(5), rows)
    copied = draw_samples(points[rows], sdf[rows], 64, torch.Generator().manual_seed(5))
    for got, expected in zip(direct, copied):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert direct[0].shape == (2, 64, 3) and direct[1].shape == (2, 64)
