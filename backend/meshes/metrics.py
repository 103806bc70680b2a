"""Quality figures of a neural shape against its source mesh, all in normalised units.

- surface error (the paper's): mean |f(p)| over points p sampled uniformly on the source surface
  (100,000 by default); it says how far the zero level set misses the true surface. Its tail, the 99th
  percentile of |f(p)|, says whether some part of the surface is missed by far (a lost thin part).
- Chamfer distance: mean distance from source-surface samples to the reconstructed surface plus mean
  distance from reconstruction samples to the source surface (L2, not squared; point-to-surface, so
  there is no sampling-gap bias), reconstruction by marching cubes.
- F-score at threshold tau = 0.01 (about 0.56% of the bounding sphere's diameter): harmonic mean of
  the fraction of reconstruction samples within tau of the source (precision) and of source samples
  within tau of the reconstruction (recall).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from backend.shapes.architecture import Architecture, Weights
from backend.shapes.network import evaluate_sdf
from kernels.mesh_sdf import MeshDistance, SignMethod

SURFACE_ERROR_POINTS = 100_000
CHAMFER_POINTS = 100_000
FSCORE_THRESHOLD = 0.01
TAIL_QUANTILE = 0.99


def surface_samples(vertices: np.ndarray, faces: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """Points uniformly distributed over the surface area: (count, 3) float32, the vertices' frame."""
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    points, _ = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return np.asarray(points, dtype=np.float32)


def surface_error(architecture: Architecture, weights: Weights, surface_points: np.ndarray) -> float:
    """Mean |f| over points on the source surface (normalised frame)."""
    return float(np.abs(evaluate_sdf(architecture, weights, surface_points)).mean())


def surface_error_with_tail(
    architecture: Architecture, weights: Weights, surface_points: np.ndarray, shell: float = 0.0
) -> tuple[float, float]:
    """Mean and TAIL_QUANTILE percentile of |f + shell| over points on the source surface (normalised frame);
    ``shell``: the half thickness of a shape fitted as a shell around its surface (the field is -shell there)."""
    distances = np.abs(evaluate_sdf(architecture, weights, surface_points) + shell)
    return float(distances.mean()), float(np.quantile(distances, TAIL_QUANTILE))


@dataclass(frozen=True)
class ReconstructionQuality:
    chamfer: float
    fscore: float


def reconstruction_quality(
    source: trimesh.Trimesh,
    source_points: np.ndarray,
    reconstruction: trimesh.Trimesh,
    threshold: float = FSCORE_THRESHOLD,
    seed: int = 0,
    shell: float = 0.0,
) -> ReconstructionQuality:
    """Chamfer distance and F-score between a source mesh (with its surface samples (n, 3)) and a reconstruction.

    Both meshes in the same frame. An empty reconstruction scores Chamfer = inf and F-score = 0. With
    ``shell`` > 0 the reconstruction is a shell of that half thickness around the source (a sheet made
    solid): distances are measured to the source thickened by it, |d - shell|.
    """
    if len(reconstruction.faces) == 0:
        return ReconstructionQuality(chamfer=float("inf"), fscore=0.0)
    recon_points = surface_samples(reconstruction.vertices, reconstruction.faces, len(source_points), seed=seed + 1)
    to_recon = MeshDistance(reconstruction.vertices, reconstruction.faces).distance(source_points, SignMethod.NONE)
    to_source = MeshDistance(source.vertices, source.faces).distance(recon_points, SignMethod.NONE)
    return _quality(np.abs(to_recon - shell), np.abs(to_source - shell), threshold)


def point_cloud_quality(
    points: np.ndarray, reconstruction: trimesh.Trimesh, threshold: float = FSCORE_THRESHOLD, seed: int = 0
) -> ReconstructionQuality:
    """Chamfer distance and F-score between a point cloud (n, 3) and a reconstruction, same frame.

    Cloud to reconstruction is point-to-surface; reconstruction samples to the cloud go to the nearest
    point, so that half is biased upwards by the cloud's point spacing.
    """
    if len(reconstruction.faces) == 0:
        return ReconstructionQuality(chamfer=float("inf"), fscore=0.0)
    recon_points = surface_samples(
        reconstruction.vertices, reconstruction.faces, min(len(points), CHAMFER_POINTS), seed=seed + 1
    )
    to_recon = MeshDistance(reconstruction.vertices, reconstruction.faces).distance(
        np.asarray(points, dtype=np.float32), SignMethod.NONE
    )
    to_cloud = cKDTree(points).query(recon_points)[0]
    return _quality(to_recon, to_cloud, threshold)


def _quality(to_reconstruction: np.ndarray, to_source: np.ndarray, threshold: float) -> ReconstructionQuality:
    """From distances source -> reconstruction and reconstruction -> source: Chamfer and F-score at ``threshold``."""
    recall = float((to_reconstruction < threshold).mean())
    precision = float((to_source < threshold).mean())
    fscore = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return ReconstructionQuality(chamfer=float(to_reconstruction.mean() + to_source.mean()), fscore=fscore)
