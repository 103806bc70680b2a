"""Fitting a family member from surface points alone: a point cloud (MetaSDF's level-set case) or a
partial scan (its partial-observation case, which shape completion builds on).

Without signed distances the fit is a boundary value problem (Gropp et al., IGR): the network must
vanish on the points, have unit gradient everywhere (eikonal term), and, when normals are known,
have gradients along them on the surface. For a *complete* point cloud the distance to the nearest
point is the unsigned distance off the surface, so |f| must match it (Atzmon & Lipman, SAL); and in
the normalised frame the shape lies inside the bounding sphere of radius 0.9, so outside it the true
distance is at least ``|x| - 0.9``: a hinge on that bound fixes the sign (positive outside). A partial scan may continue
beyond its own bounding sphere, so there the sign comes from the normals, or else from the family's
initial weights (negative near the centre).

Points are in the normalised frame; the result is an ordinary fit of the family (negative inside).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from backend.errors import NeuralShapesError, check_cancel
from backend.fitting.batched import FitProgress, FitResult
from backend.shapes.architecture import ModelFamily
from backend.shapes.frame import BOUNDING_RADIUS, CUBE_HALF_SIZE
from backend.shapes.network import BatchedSDF


@dataclass(frozen=True)
class SurfaceFitSettings:
    """Weights of the loss terms are relative to the mean |f| on the surface points."""

    steps: int = 1500
    surface_batch: int = 2048  # surface points per step
    free_batch: int = 2048  # uniform points in the cube per step (eikonal and bounding-sphere terms)
    learning_rate: float = 1e-3
    eikonal_weight: float = 0.1
    distance_weight: float = 1.0  # complete clouds: | |f| - distance to the nearest point | off the surface
    near_sigma: float = 0.05  # off-surface points: surface points plus Gaussian noise of this size
    normal_weight: float = 1.0
    outside_weight: float = 1.0
    report_every: int = 100
    seed: int = 0


def fit_surface_points(
    family: ModelFamily,
    points: np.ndarray,
    normals: np.ndarray | None = None,
    complete: bool = True,
    settings: SurfaceFitSettings = SurfaceFitSettings(),
    progress: Callable[[FitProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> FitResult:
    """Fit one MLP of ``family`` whose zero level set passes through ``points`` (n, 3), normalised frame.

    ``normals`` (n, 3), outward, optional. ``complete``: the points cover the whole surface (enables the
    bounding-sphere sign term); False for a partial scan. The result's surface error is mean |f| on the
    points.
    """
    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    if len(points) == 0 or not np.isfinite(points).all():
        raise NeuralShapesError("surface fitting needs at least one finite point")
    if np.linalg.norm(points, axis=1).max() > CUBE_HALF_SIZE * np.sqrt(3):
        raise NeuralShapesError("surface points must be in the normalised frame (inside the cube [-1, 1]^3)")
    report = progress or (lambda _: None)
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(settings.seed)
    surface = torch.from_numpy(points)
    surface_normals = None
    if normals is not None:
        normals = np.asarray(normals, dtype=np.float32).reshape(-1, 3)
        length = np.linalg.norm(normals, axis=1, keepdims=True)
        if normals.shape != points.shape or not np.isfinite(normals).all() or (length == 0).any():
            raise NeuralShapesError("normals must be one finite non-zero vector per point")
        surface_normals = torch.from_numpy(normals / length)
    tree = cKDTree(points) if complete else None
    model = BatchedSDF(family.architecture, [family.initial_weights])
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    surface_error = float("nan")
    for step in range(1, settings.steps + 1):
        check_cancel(cancel, "fit cancelled")
        index = torch.randint(0, len(surface), (settings.surface_batch,), generator=generator)
        free = _free_points(surface, settings, generator)
        batch = torch.cat([surface[index], free]).requires_grad_()
        values = model(batch[None])[0]
        (gradients,) = torch.autograd.grad(values.sum(), batch, create_graph=True)
        on_surface, off_surface = values[: len(index)], values[len(index) :]
        loss = on_surface.abs().mean()
        loss = loss + settings.eikonal_weight * ((gradients.norm(dim=1) - 1) ** 2).mean()
        if surface_normals is not None:
            alignment = torch.nn.functional.cosine_similarity(gradients[: len(index)], surface_normals[index], dim=1)
            loss = loss + settings.normal_weight * (1 - alignment).mean()
        if complete:
            # Sign-agnostic distance (Atzmon & Lipman, SAL): the magnitude is known, the sign follows from
            # continuity and the outside bound below.
            nearest = torch.from_numpy(tree.query(free.numpy())[0].astype(np.float32))
            loss = loss + settings.distance_weight * (off_surface.abs() - nearest).abs().mean()
            lower_bound = free.norm(dim=1) - BOUNDING_RADIUS  # the true distance is at least this outside the sphere
            loss = loss + settings.outside_weight * torch.relu(lower_bound - off_surface)[lower_bound > 0].sum() / len(
                free
            )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % settings.report_every == 0 or step == settings.steps:
            surface_error = float(on_surface.detach().abs().mean())
            report(FitProgress(0, "fitting", step, surface_error))
    with torch.no_grad():
        surface_error = float(model(surface[None])[0].abs().mean())
    report(FitProgress(0, "done", settings.steps, surface_error))
    return FitResult(
        weights=model.shape_weights(0),
        steps=settings.steps,
        fit_seconds=time.perf_counter() - started,
        final_loss=float(loss.detach()),
        surface_error_estimate=surface_error,
        stop_reason="step limit",
    )


def _free_points(surface: torch.Tensor, settings: SurfaceFitSettings, generator: torch.Generator) -> torch.Tensor:
    """Off-surface points: half near the surface (jittered surface points), half uniform in the cube."""
    near_count = settings.free_batch // 2
    near = surface[torch.randint(0, len(surface), (near_count,), generator=generator)]
    near = near + settings.near_sigma * torch.randn(near_count, 3, generator=generator)
    uniform = (torch.rand(settings.free_batch - near_count, 3, generator=generator) * 2 - 1) * CUBE_HALF_SIZE
    return torch.cat([near, uniform]).clamp(-CUBE_HALF_SIZE, CUBE_HALF_SIZE)
