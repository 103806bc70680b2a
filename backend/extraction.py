"""Meshes back from a neural SDF by marching cubes on a dense grid (torch evaluation + PyMCubes).

The grid spans the sampling cube [-1, 1]^3 of the normalised frame with ``resolution`` points per
axis. Output vertices are in the *normalised* frame, faces are oriented outward (normals point from
negative to positive SDF).
"""

from __future__ import annotations

import mcubes
import numpy as np
import trimesh

from backend.mesh_loading import BOUNDING_RADIUS
from backend.network import Architecture, Weights, evaluate_sdf
from backend.sampling import CUBE_HALF_SIZE

MAX_RESOLUTION = 1024
EXTRACTION_RADIUS = BOUNDING_RADIUS + 0.05


def clip_to_bounding_sphere(values: np.ndarray, points: np.ndarray) -> np.ndarray:
    """max(f, |x| - EXTRACTION_RADIUS): intersect the field with a sphere just outside the shape's bounding sphere.

    Normalisation puts every source surface inside radius 0.9, so this changes nothing of the true
    shape; it removes stray zero crossings a network may have in the sparsely sampled cube corners.
    """
    return np.maximum(values, np.linalg.norm(points, axis=-1) - EXTRACTION_RADIUS)


def sdf_grid(architecture: Architecture, weights: Weights, resolution: int) -> np.ndarray:
    """SDF values on a regular grid over the cube, clipped to the bounding sphere: (r, r, r) float32 indexed [x, y, z]."""
    axis = np.linspace(-CUBE_HALF_SIZE, CUBE_HALF_SIZE, resolution, dtype=np.float32)
    values = np.empty((resolution, resolution, resolution), dtype=np.float32)
    yz = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    for i, x in enumerate(axis):  # one slab at a time keeps memory at r^2 points
        slab = np.concatenate([np.full((len(yz), 1), x, dtype=np.float32), yz], axis=1)
        values[i] = clip_to_bounding_sphere(evaluate_sdf(architecture, weights, slab), slab).reshape(resolution, resolution)
    return values


def marching_cubes(values: np.ndarray) -> trimesh.Trimesh:
    """Zero level set of a grid over the cube (as :func:`sdf_grid` makes), normalised frame, outward faces."""
    resolution = values.shape[0]
    vertices, faces = mcubes.marching_cubes(values, 0.0)
    if len(faces) == 0:
        return trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), process=False)
    vertices = vertices * (2 * CUBE_HALF_SIZE / (resolution - 1)) - CUBE_HALF_SIZE
    # PyMCubes winds faces so normals point towards decreasing values: flip them to point outward (f > 0).
    return trimesh.Trimesh(vertices, np.ascontiguousarray(faces[:, ::-1]), process=True)


def extract_mesh(architecture: Architecture, weights: Weights, resolution: int) -> trimesh.Trimesh:
    """Marching-cubes mesh of the zero level set, normalised frame."""
    if not 8 <= resolution <= MAX_RESOLUTION:
        raise ValueError(f"resolution must be between 8 and {MAX_RESOLUTION}, got {resolution}")
    return marching_cubes(sdf_grid(architecture, weights, resolution))
