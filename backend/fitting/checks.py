"""When a fitted shape is done: the checks an artist's eye makes, as numbers.

The paper's stopping metric, the mean |f| over points on the source surface, hides broken shapes: a
shell full of holes, a body with floaters or a head without its horns can average below 0.003. A shape
is done when all of these hold (normalised units, bounding sphere radius 0.9):

- **surface error**: mean |f| on held-out surface points <= 0.003 (the paper's), with the mean training
  L1 <= 0.01 (the field away from the surface is right too);
- **tail**: the 99th percentile of |f| there (``metrics.TAIL_QUANTILE``) <= 0.02, twice the F-score's
  threshold: no part of the surface is missed by far, save 1% of it (errors spread like a half-normal
  distribution put the 99th percentile at 3.2 times the mean: 0.0097 at the target mean);
- **reconstruction**: the marching-cubes surface at the extraction resolution against the source, both
  ways: F-score@0.01 >= 0.95 (recall sees missing parts, precision floaters) and Chamfer <= 0.010.

The first two cost nothing extra and are checked at every evaluation, on 20 K of the source's
:func:`evaluation_points`; when they hold, the shape is measured as its report measures it
(:func:`evaluate`: all 100 K points and the reconstruction, a marching-cubes extraction and two distance
queries), and that measurement decides. The report then says what the fit decided: deciding on the 20 K
points alone, a shape just inside a target was "done" in the fit and failed in the report about half
the time (0.0030 in the fit, 0.00303 reported).

Some meshes cannot pass the reconstruction check whatever the net: parts thinner than the grid fall
between its points, and so do surfaces facing a gap thinner than it (an assembly's clearances).
:func:`source_field_quality` measures the source's own signed field the same way, the bound no net beats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import trimesh

from backend.meshes.extraction import extract_mesh, field_grid, marching_cubes
from backend.meshes.metrics import (
    CHAMFER_POINTS,
    SURFACE_ERROR_POINTS,
    ReconstructionQuality,
    reconstruction_quality,
    surface_error_with_tail,
    surface_samples,
)
from backend.shapes.architecture import Architecture, Weights
from kernels.mesh_sdf import MeshDistance, SignMethod


@dataclass(frozen=True)
class Targets:
    """What a shape must reach to be done (normalised units); the defaults are ``FitSettings``'s."""

    surface_error: float
    # The surface error alone can be low while the field away from the surface is still wrong (ghost
    # surfaces, wrong signs, seen early in fits): a shape also needs this mean training L1.
    loss: float
    tail_error: float
    fscore: float
    chamfer: float


@dataclass(frozen=True)
class Measured:
    """One shape's figures against :class:`Targets`; NaN where not measured (yet)."""

    surface_error: float
    tail_error: float
    loss: float = math.nan
    fscore: float = math.nan
    chamfer: float = math.nan


def failed_checks(measured: Measured, targets: Targets) -> list[str]:
    """The checks ``measured`` fails, each as a short phrase ("F-score 0.91 < 0.95"); unmeasured figures pass."""
    failures = []
    for label, value, target, higher_is_better, digits in (
        ("surface error", measured.surface_error, targets.surface_error, False, 4),
        ("training loss", measured.loss, targets.loss, False, 4),
        ("tail error", measured.tail_error, targets.tail_error, False, 4),
        ("F-score", measured.fscore, targets.fscore, True, 3),
        ("Chamfer", measured.chamfer, targets.chamfer, False, 4),
    ):
        if math.isnan(value):
            continue
        if higher_is_better and value < target:
            failures.append(f"{label} {_apart(value, target, digits, '<')}")
        elif not higher_is_better and not value <= target:  # an infinite Chamfer fails too
            failures.append(f"{label} {_apart(value, target, digits, '>')}")
    return failures


def reconstruction_failures(quality: ReconstructionQuality, targets: Targets) -> list[str]:
    """The reconstruction checks (F-score, Chamfer) ``quality`` fails, named as :func:`failed_checks` names them."""
    return failed_checks(Measured(math.nan, math.nan, fscore=quality.fscore, chamfer=quality.chamfer), targets)


def _apart(value: float, target: float, digits: int, relation: str) -> str:
    """ "value relation target" with enough decimals that the two differ (0.00301 > 0.00300, not 0.0030 > 0.0030)."""
    while f"{value:.{digits}f}" == f"{target:.{digits}f}" and digits < 8:
        digits += 1
    return f"{value:.{digits}f} {relation} {target:.{digits}f}"


def evaluation_points(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """The points on a source surface (vertices (n, 3), faces (f, 3)) its nets are measured on, the same for
    every measurement of it (seeded): (max(SURFACE_ERROR_POINTS, CHAMFER_POINTS), 3) float32."""
    return surface_samples(vertices, faces, max(SURFACE_ERROR_POINTS, CHAMFER_POINTS), seed=0)


@dataclass(frozen=True)
class Evaluation:
    """A net measured against its source: mean and tail of |f| on the source surface, Chamfer and F-score of
    its marching-cubes ``reconstruction`` (normalised frame)."""

    surface_error: float
    tail_error: float
    chamfer: float
    fscore: float
    reconstruction: trimesh.Trimesh

    @property
    def metrics(self) -> dict[str, float]:
        """The figures under the names a shape's metrics give them."""
        return {
            "surface_error": self.surface_error,
            "surface_error_p99": self.tail_error,
            "chamfer": self.chamfer,
            "fscore": self.fscore,
        }

    def measured(self, loss: float = math.nan) -> Measured:
        return Measured(self.surface_error, self.tail_error, loss, self.fscore, self.chamfer)


def evaluate(
    architecture: Architecture,
    weights: Weights,
    source_vertices: np.ndarray,
    source_faces: np.ndarray,
    source_points: np.ndarray,
    resolution: int,
    shell: float = 0.0,
) -> Evaluation:
    """A net against its source mesh (vertices (n, 3), faces (f, 3)) and :func:`evaluation_points` on it, all
    in the normalised frame: surface error and its tail, and the marching-cubes surface at ``resolution``
    compared both ways. With ``shell`` > 0 against the source thickened by it (a sheet fitted as a shell)."""
    reconstruction = extract_mesh(architecture, weights, resolution)
    source = trimesh.Trimesh(source_vertices, source_faces, process=False)
    quality = reconstruction_quality(source, source_points[:CHAMFER_POINTS], reconstruction, shell=shell)
    mean, tail = surface_error_with_tail(architecture, weights, source_points[:SURFACE_ERROR_POINTS], shell)
    return Evaluation(mean, tail, quality.chamfer, quality.fscore, reconstruction)


def source_field_quality(
    source_vertices: np.ndarray,
    source_faces: np.ndarray,
    source_points: np.ndarray,
    resolution: int,
    sign: SignMethod,
    shell: float = 0.0,
) -> ReconstructionQuality:
    """F-score and Chamfer of the source mesh's own field, extracted as a net's is (marching cubes at
    ``resolution`` over the cube, clipped to the bounding sphere), against the source (vertices (n, 3),
    faces (f, 3)) and points sampled on it (p, 3), all in the normalised frame: what a perfect fit reaches.

    The field is the signed distance (``sign``, negative inside), or |d| - ``shell`` for a sheet fitted
    as a shell (the winding number makes a 128^3 grid a few seconds).
    """
    distance = MeshDistance(source_vertices, source_faces)
    if shell:
        values = field_grid(lambda points: np.abs(distance.distance(points, SignMethod.NONE)) - shell, resolution)
    else:
        values = field_grid(lambda points: distance.distance(points, sign), resolution)
    source = trimesh.Trimesh(source_vertices, source_faces, process=False)
    return reconstruction_quality(source, source_points, marching_cubes(values), shell=shell)
