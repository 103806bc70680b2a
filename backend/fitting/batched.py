"""Fitting neural SDFs to meshes, many shapes at once.

Recipe (Davies et al., with faster optimisation settings we measured, see README): importance samples
per shape (:mod:`backend.meshes.sampling`), L1 loss on signed distance, Adam. All shapes of a call are one
:class:`BatchedSDF` whose parameters are stacked along a shape axis, so a step costs a few batched
matrix products whatever the number of shapes. Each shape stops on its own when it passes every check
of :mod:`backend.fitting.checks` (mean and tail surface error on held-out surface points, then the
measurement its report gives: its reconstruction against the source both ways) or stops improving;
stopped shapes leave the batch so the rest run faster.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

import numpy as np
import torch

from backend.errors import check_cancel
from backend.fitting.checks import Evaluation, Measured, Targets, evaluate, evaluation_points, failed_checks
from backend.fitting.inner_loop import adapt, draw_samples, family_parameters, family_rates, weights_of
from backend.meshes.loading import NormalisedMesh
from backend.meshes.metrics import TAIL_QUANTILE
from backend.meshes.sampling import (
    DEFAULT_BETA,
    DEFAULT_UNIFORM_FRACTION,
    MAX_SIGN_JUMPS,
    SHELL_HALF_THICKNESS,
    as_shell,
    encloses_volume,
    importance_samples,
    sign_jump_share,
)
from backend.shapes.architecture import ModelFamily, Weights
from backend.shapes.network import BatchedSDF
from backend.torch_device import SharedCores
from kernels.mesh_sdf import MeshDistance, SignMethod

CORE_CHECK_STEPS = 10  # steps between looks at what other processes leave of the cores (SharedCores)


class OpenMeshes(StrEnum):
    """How a mesh with large openings is read (its winding-number sign jumps across them: sign_jump_share)."""

    SHELL = "shell"  # a shell around its faces: the surface as the source has it, openings open
    # the solid whose winding number closes each opening with a lid: what nf2vec's models were trained on
    SOLID = "solid"


@dataclass(frozen=True)
class FitSettings:
    """How shapes are fitted. Surface errors are in normalised units (bounding sphere radius 0.9)."""

    # 300 K samples fit as well as 1 M (8 real meshes: the same checks passed in about the same steps), cost a
    # third of the sampling and keep each step's random draws in cache (a one-shape step about a fifth cheaper).
    samples: int = 300_000
    beta: float = DEFAULT_BETA
    uniform_fraction: float = DEFAULT_UNIFORM_FRACTION
    batch_size: int = 2048  # points per shape per step (the paper's); measured faster to 0.003 than 16 K
    # Not higher: nf2vec needs fits of one shape to land together in weight space. Adam from 5e-3 (halving
    # every 1,000 steps) reached the targets in 1,850 steps instead of 2,650 on 8 real meshes, but moved nets
    # far from the family's start: re-fits no longer found their first fits, and the nf2vec tests failed.
    learning_rate: float = 1e-3
    min_learning_rate: float = 1e-4
    # What a shape must reach to be done: backend.fitting.checks says why each is there.
    target_surface_error: float = 0.003
    target_loss: float = 0.01
    target_tail_error: float = 0.02
    target_fscore: float = 0.95
    target_chamfer: float = 0.010
    check_resolution: int = 128  # marching cubes grid of the reconstruction check: the one the user gets
    check_every: int = 5  # evaluations between two reconstruction checks of a shape that failed one
    check_patience: int = 3  # failed reconstruction checks without a 0.01 better F-score before a shape stops
    max_steps: int = 20_000
    eval_every: int = 100
    eval_points: int = 20_000  # of the held-out points, those the cheap checks see at each evaluation
    patience: int = 8  # evaluations without a 2% improvement before the learning rate halves / the fit stops
    seed: int = 0
    open_meshes: OpenMeshes = OpenMeshes.SHELL

    @property
    def targets(self) -> Targets:
        return Targets(
            self.target_surface_error, self.target_loss, self.target_tail_error, self.target_fscore, self.target_chamfer
        )


@dataclass
class FitProgress:
    """What a progress callback receives; ``stage`` is 'sampling', 'fitting' or 'done'."""

    shape_index: int
    stage: str
    step: int = 0
    surface_error: float = float("nan")
    loss: float = float("nan")  # mean training L1 since the previous evaluation


@dataclass
class FitResult:
    """One fitted shape. fit_seconds = its own cost: its sampling time plus its share of the batched steps
    (each stretch of steps split evenly among the shapes still fitting), so a batch's shapes add up to
    its wall time instead of each reporting all of it."""

    weights: Weights
    steps: int
    fit_seconds: float
    final_loss: float
    surface_error_estimate: float
    stop_reason: str = field(default="")  # "target reached" (every check passed), "stopped improving", "step limit"
    shell: float = 0.0  # half thickness of the shell a mesh with no inside was fitted as (TrainingData.shell)
    failed_checks: list[str] = field(default_factory=list)  # at the last evaluation (checks.failed_checks)
    # these weights measured as the report measures them, when the fit ended on that measurement (it decided)
    evaluation: Evaluation | None = None


def sign_method_for(mesh: NormalisedMesh) -> SignMethod:
    """Pseudo-normal signs are exact for clean closed meshes and 8x cheaper; anything messy gets winding numbers."""
    return SignMethod.PSEUDO_NORMAL if mesh.clean else SignMethod.WINDING_NUMBER


@dataclass(frozen=True)
class TrainingData:
    """What training needs for one shape, all in the normalised frame.

    points (m, 3) and sdf (m,) importance samples (negative inside); held_out (e, 3) surface points for
    the stopping rule (of a mesh: its checks.evaluation_points, the report's); sample_seconds the time it
    took to make them; the source mesh, vertices (n, 3) and faces (f, 3), for the reconstruction check
    (without it the check is left out); shell, the half thickness of the solid shell a mesh with no inside
    is fitted as (0 for a solid; the field is -shell on the source surface).
    """

    points: np.ndarray
    sdf: np.ndarray
    held_out: np.ndarray
    sample_seconds: float
    vertices: np.ndarray | None = None
    faces: np.ndarray | None = None
    shell: float = 0.0


def sample_shape(mesh: NormalisedMesh, settings: FitSettings = FitSettings(), index: int = 0) -> TrainingData:
    """Importance samples and held-out surface points of one mesh (Warp on the CPU; seeded by ``index``)."""
    started = time.perf_counter()
    distance = MeshDistance(mesh.vertices, mesh.faces, device="cpu")
    samples = importance_samples(
        distance,
        settings.samples,
        sign=sign_method_for(mesh),
        beta=settings.beta,
        uniform_fraction=settings.uniform_fraction,
        seed=settings.seed + index,
    )
    shell = 0.0
    # A sheet or thin open shell has no inside to sign, nor has a plate thinner than the grid anything a grid
    # point can see; a mesh with large openings has one only up to the membranes its winding number spans
    # across them (unless settings.open_meshes asks for those). All are fitted as shells around their faces
    # (a thin solid's: the solid thickened).
    if not encloses_volume(samples) or (
        settings.open_meshes == OpenMeshes.SHELL and not mesh.clean and sign_jump_share(samples) > MAX_SIGN_JUMPS
    ):
        shell = SHELL_HALF_THICKNESS
        samples = as_shell(samples, shell)
    held_out = evaluation_points(mesh.vertices, mesh.faces)
    seconds = time.perf_counter() - started
    return TrainingData(samples.points, samples.sdf, held_out, seconds, mesh.vertices, mesh.faces, shell)


def fit_shapes(
    family: ModelFamily,
    meshes: list[NormalisedMesh],
    settings: FitSettings = FitSettings(),
    progress: Callable[[FitProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> list[FitResult]:
    """Fit one MLP of ``family`` to each mesh (normalised frame), all in one batched model."""
    report = progress or (lambda _: None)
    data = []
    for index, mesh in enumerate(meshes):
        check_cancel(cancel, "fit cancelled")
        report(FitProgress(index, "sampling"))
        data.append(sample_shape(mesh, settings, index))
    return train_shapes(family, data, settings, report, cancel)


def train_shapes(
    family: ModelFamily,
    data: list[TrainingData],
    settings: FitSettings = FitSettings(),
    progress: Callable[[FitProgress], None] | None = None,
    cancel: threading.Event | None = None,
    start: list[Weights] | None = None,
) -> list[FitResult]:
    """Train one MLP of ``family`` per shape on its samples, all shapes in one batched model.

    Samples may be made elsewhere (another process, another machine); all shapes need the same count.
    ``start``: each shape's first weights (of the family's architecture); None: the family's start, after its
    meta-learned inner steps when it has them.
    """
    report = progress or (lambda _: None)
    points = torch.stack([torch.from_numpy(d.points) for d in data])  # (s, m, 3)
    sdf = torch.stack([torch.from_numpy(d.sdf) for d in data])  # (s, m)
    # the cheap checks' points: the first of each shape's held-out points (s, e, 3)
    check_points = torch.stack([torch.from_numpy(d.held_out[: settings.eval_points]) for d in data])
    sample_seconds = [d.sample_seconds for d in data]
    shells = torch.tensor([d.shell for d in data])  # (s,)
    count = len(data)
    generator = torch.Generator().manual_seed(settings.seed)
    start_weights, step = start or [family.initial_weights] * count, 0
    if start is None and family.is_meta_learned:
        start_weights, step = _meta_steps(family, points, sdf, generator), family.inner_steps
    model = BatchedSDF(family.architecture, start_weights)
    optimizer = _BatchedAdam(list(model.parameters()))
    active = torch.arange(count)  # original index of each row of the model
    results: list[FitResult | None] = [None] * count
    best = torch.full((count,), float("inf"))
    stale = torch.zeros(count, dtype=torch.long)
    learning_rate = torch.full((count,), settings.learning_rate)
    loss_sum, window_steps = torch.zeros(count), 0
    shared_seconds = [0.0] * count
    targets, next_check = settings.targets, [0] * count
    checked: list[_Check | None] = [None] * count  # each shape's last full check
    best_fscore, stalled_checks = [-1.0] * count, [0] * count  # a shape whose checks stop gaining gives up
    window_started = time.perf_counter()
    # torch's threads give way to other busy processes, come back when they stop, and are restored after
    with SharedCores() as cores:
        while len(active) > 0:
            check_cancel(cancel, "fit cancelled")
            step += 1
            if step % CORE_CHECK_STEPS == 0:
                cores.adjust()
            batch_points, batch_sdf = draw_samples(points, sdf, settings.batch_size, generator, active)
            per_shape = (model(batch_points) - batch_sdf).abs().mean(dim=1)
            per_shape.sum().backward()  # shapes share no parameters: each gets the gradient of its own loss
            optimizer.step(learning_rate[active])
            loss_sum[active] += per_shape.detach()
            window_steps += 1
            if step % settings.eval_every and step < settings.max_steps:
                continue
            with torch.no_grad():  # the field's error on the source surface, where it is 0 (or -shell)
                point_errors = (model(check_points[active]) + shells[active, None]).abs()
            errors, tails = point_errors.mean(dim=1), torch.quantile(point_errors, TAIL_QUANTILE, dim=1)
            now = time.perf_counter()
            for shape in active.tolist():  # the steps since the last evaluation served these shapes alike
                shared_seconds[shape] += (now - window_started) / len(active)
            finished = torch.zeros(len(active), dtype=torch.bool)
            for row, shape in enumerate(active.tolist()):
                error = float(errors[row])
                window_loss = float(loss_sum[shape]) / window_steps
                report(FitProgress(shape, "fitting", step, error, window_loss))
                if error < best[shape] * 0.98:
                    best[shape], stale[shape] = error, 0
                else:
                    stale[shape] += 1
                if stale[shape] >= settings.patience:
                    learning_rate[shape] /= 2
                    stale[shape] = 0
                failures = failed_checks(Measured(error, float(tails[row]), window_loss), targets)
                if not failures and data[shape].vertices is not None:
                    if step >= next_check[shape]:  # due: the first time the cheap checks pass, then every check_every
                        started = time.perf_counter()
                        evaluation = _evaluate(model, row, data[shape], settings)
                        failed = failed_checks(evaluation.measured(window_loss), targets)
                        checked[shape] = _Check(step, evaluation, failed)
                        shared_seconds[shape] += time.perf_counter() - started  # this shape's own cost
                        next_check[shape] = step + settings.check_every * settings.eval_every
                        if evaluation.fscore >= best_fscore[shape] + 0.01:
                            best_fscore[shape], stalled_checks[shape] = evaluation.fscore, 0
                        else:
                            stalled_checks[shape] += 1
                    failures = checked[shape].failures
                reason = ""
                if not failures:
                    reason = "target reached"
                elif (
                    learning_rate[shape] < settings.min_learning_rate
                    or stalled_checks[shape] >= settings.check_patience
                ):
                    reason = "stopped improving"
                elif step >= settings.max_steps:
                    reason = "step limit"
                if reason:
                    finished[row] = True
                    results[shape] = FitResult(
                        weights=model.shape_weights(row),
                        steps=step,
                        fit_seconds=sample_seconds[shape] + shared_seconds[shape],
                        final_loss=window_loss,
                        surface_error_estimate=error,
                        stop_reason=reason,
                        shell=data[shape].shell,
                        failed_checks=failures,
                        evaluation=checked[shape].evaluation
                        if checked[shape] and checked[shape].step == step
                        else None,
                    )
                    report(FitProgress(shape, "done", step, error))
            window_started = time.perf_counter()
            loss_sum.zero_()
            window_steps = 0
            if finished.any():
                keep = torch.nonzero(~finished).squeeze(1)
                active = active[keep]
                model.keep_rows(keep)
                optimizer.keep_rows(keep, list(model.parameters()))
    return [r for r in results if r is not None]


class _Check(NamedTuple):
    """A shape's full check: the step it ran at, its figures and the checks they fail."""

    step: int
    evaluation: Evaluation
    failures: list[str]


def _evaluate(model: BatchedSDF, row: int, data: TrainingData, settings: FitSettings) -> Evaluation:
    """One shape of the batch measured as its report measures it (checks.evaluate)."""
    weights = model.shape_weights(row)
    return evaluate(
        model.architecture, weights, data.vertices, data.faces, data.held_out, settings.check_resolution, data.shell
    )


def _meta_steps(
    family: ModelFamily, points: torch.Tensor, sdf: torch.Tensor, generator: torch.Generator
) -> list[Weights]:
    """A meta-learned family's inner steps (plain gradient steps at its learned per-parameter rates).

    points (s, m, 3), sdf (s, m): each shape's samples; each step uses ``family.inner_batch`` of them.
    """
    count, k, n = sdf.shape[0], family.inner_steps, family.inner_batch
    step_points, step_sdf = draw_samples(points, sdf, k * n, generator)
    step_points, step_sdf = step_points.view(count, k, n, 3), step_sdf.view(count, k, n)
    params = [p.requires_grad_() for p in family_parameters(family, count)]
    adapted = adapt(family.architecture, params, family_rates(family), step_points, step_sdf)
    return [weights_of(adapted, row) for row in range(count)]


class _BatchedAdam:
    """Adam with one learning rate per shape (row of every stacked parameter) and rows that can be dropped.

    torch.optim.Adam has one learning rate per parameter group and no way to remove rows of its state,
    which the per-shape schedule and early stopping need; the update itself is the standard one.
    """

    def __init__(self, params: list[torch.Tensor], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = params
        self.betas, self.eps, self.step_count = betas, eps, 0
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self, learning_rates: torch.Tensor) -> None:
        """learning_rates : (s,) one per shape row."""
        self.step_count += 1
        beta1, beta2 = self.betas
        correction1 = 1 - beta1**self.step_count
        correction2 = 1 - beta2**self.step_count
        for param, avg, avg_sq in zip(self.params, self.exp_avg, self.exp_avg_sq):
            avg.lerp_(param.grad, 1 - beta1)
            avg_sq.mul_(beta2).addcmul_(param.grad, param.grad, value=1 - beta2)
            denom = (avg_sq / correction2).sqrt_().add_(self.eps)
            rate = (learning_rates / correction1).view(-1, *([1] * (param.dim() - 1)))
            param.addcdiv_(avg * rate, denom, value=-1.0)
            param.grad = None

    def keep_rows(self, keep: torch.Tensor, params: list[torch.Tensor]) -> None:
        """Continue with ``params`` (the kept rows of the old ones) and the same rows of the moments."""
        self.params = params
        self.exp_avg = [avg[keep] for avg in self.exp_avg]
        self.exp_avg_sq = [avg_sq[keep] for avg_sq in self.exp_avg_sq]
