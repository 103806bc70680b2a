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

The first two cost nothing extra and are checked at every evaluation; the reconstruction check costs a
marching-cubes extraction and two distance queries, so it runs only when the others hold.

Some meshes cannot pass the reconstruction check whatever the net: parts thinner than the grid fall
between its points, and so do surfaces facing a gap thinner than it (an assembly's clearances).
:func:`source_field_quality` measures the source's own signed field the same way, the bound no net beats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import trimesh

from backend.meshes.extraction import extract_surface, field_grid, marching_cubes
from backend.meshes.metrics import ReconstructionQuality, reconstruction_quality
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


def reconstruction_check(
    architecture: Architecture,
    weights: Weights,
    source_vertices: np.ndarray,
    source_faces: np.ndarray,
    source_points: np.ndarray,
    resolution: int,
    shell: float = 0.0,
) -> ReconstructionQuality:
    """F-score and Chamfer of the net's marching-cubes surface at ``resolution`` against the source mesh
    (vertices (n, 3), faces (f, 3)) and points sampled on it (p, 3), all in the normalised frame; with
    ``shell`` > 0 against the source thickened by it (a sheet fitted as a shell)."""
    surface = extract_surface(architecture, weights, resolution)
    reconstruction = trimesh.Trimesh(surface.vertices, surface.faces, process=False)
    source = trimesh.Trimesh(source_vertices, source_faces, process=False)
    return reconstruction_quality(source, source_points, reconstruction, shell=shell)


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
