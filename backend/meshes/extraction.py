"""Meshes back from a neural SDF by marching cubes over the sampling cube [-1, 1]^3 of its normalised frame.

Methods: "sparse" (default; Warp kernels, Lipschitz octree, cost follows the surface area), "dense"
(Warp kernels on every grid node) and "reference" (torch evaluation + PyMCubes, the slow CPU
reference). All clip the field to the sphere of radius ``EXTRACTION_RADIUS`` (see
:func:`clip_to_bounding_sphere`). The grid has ``resolution`` points per axis. Output vertices are in the *normalised* frame
unless a ``transform`` (the shape's similarity) is given, then in the source mesh's frame; faces are
oriented outward (normals point from negative to positive SDF), vertices are welded, and the Warp
methods attach unit vertex normals from the network's analytic gradient.

Only the reference method needs torch, PyMCubes and trimesh; they are imported there, so the command
line's ``mesh`` starts without them (:func:`extract_surface`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from backend.shapes.architecture import Architecture, Weights
from backend.shapes.frame import CUBE_HALF_SIZE, EXTRACTION_RADIUS, Similarity
from kernels.marching_cubes import MAX_RESOLUTION, extract_neural

if TYPE_CHECKING:
    import trimesh


@dataclass(frozen=True)
class ExtractedSurface:
    """A marching-cubes surface: vertices (v, 3) float64, faces (f, 3) int64 (outward), unit vertex normals
    (v, 3) float32, or None where the method gives none (reference) or the surface is empty."""

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray | None


def clip_to_bounding_sphere(values: np.ndarray, points: np.ndarray) -> np.ndarray:
    """max(f, |x| - EXTRACTION_RADIUS): intersect the field with a sphere just outside the shape's bounding sphere.

    Normalisation puts every source surface inside radius 0.9, so this changes nothing of the true
    shape; it removes stray zero crossings a network may have in the sparsely sampled cube corners.
    """
    return np.maximum(values, np.linalg.norm(points, axis=-1) - EXTRACTION_RADIUS)


def field_grid(field: Callable[[np.ndarray], np.ndarray], resolution: int) -> np.ndarray:
    """A field (points (n, 3) float32 -> values (n,)) on a regular grid over the cube, clipped to the bounding
    sphere: (r, r, r) float32 indexed [x, y, z]. One slab of r^2 points at a time keeps memory small."""
    axis = np.linspace(-CUBE_HALF_SIZE, CUBE_HALF_SIZE, resolution, dtype=np.float32)
    values = np.empty((resolution, resolution, resolution), dtype=np.float32)
    yz = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    for i, x in enumerate(axis):
        slab = np.concatenate([np.full((len(yz), 1), x, dtype=np.float32), yz], axis=1)
        values[i] = clip_to_bounding_sphere(field(slab), slab).reshape(resolution, resolution)
    return values


def sdf_grid(architecture: Architecture, weights: Weights, resolution: int) -> np.ndarray:
    """A net's SDF on a regular grid over the cube, clipped to the bounding sphere (:func:`field_grid`)."""
    from backend.shapes.network import evaluate_sdf

    return field_grid(lambda points: evaluate_sdf(architecture, weights, points), resolution)


def marching_cubes(values: np.ndarray) -> trimesh.Trimesh:
    """Zero level set of a grid over the cube (as :func:`sdf_grid` makes), normalised frame, outward faces."""
    import mcubes
    import trimesh

    resolution = values.shape[0]
    vertices, faces = mcubes.marching_cubes(values, 0.0)
    if len(faces) == 0:
        return trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), process=False)
    vertices = vertices * (2 * CUBE_HALF_SIZE / (resolution - 1)) - CUBE_HALF_SIZE
    # PyMCubes orients faces towards increasing values' opposite; flip so normals point outward (f > 0).
    mesh = trimesh.Trimesh(vertices, np.ascontiguousarray(faces[:, ::-1]), process=True)
    return mesh


def extract_surface(
    architecture: Architecture,
    weights: Weights,
    resolution: int,
    *,
    method: str = "sparse",
    transform: Similarity | None = None,
    device: str | None = None,
) -> ExtractedSurface:
    """Marching-cubes surface of the zero level set: normalised frame, or the source frame with ``transform``."""
    if not 8 <= resolution <= MAX_RESOLUTION:
        raise ValueError(f"resolution must be between 8 and {MAX_RESOLUTION}, got {resolution}")
    if method == "reference":
        mesh = marching_cubes(sdf_grid(architecture, weights, resolution))
        vertices, faces, normals = np.asarray(mesh.vertices), np.asarray(mesh.faces), None
    elif method in ("sparse", "dense"):
        surface = extract_neural(
            architecture, weights, resolution, method, clip_radius=EXTRACTION_RADIUS, device=device
        )
        vertices, faces, normals = surface.vertices.astype(np.float64), surface.faces.astype(np.int64), surface.normals
    else:
        raise ValueError(f"method must be 'sparse', 'dense' or 'reference', got '{method}'")
    if transform is not None:
        vertices = transform.to_source(vertices)  # a similarity: normals keep their direction
    if len(faces) == 0:
        normals = None
    return ExtractedSurface(vertices, faces, normals)


def extract_mesh(architecture: Architecture, weights: Weights, resolution: int, **options: Any) -> trimesh.Trimesh:
    """:func:`extract_surface` (the same keyword ``options``) as a trimesh (unprocessed: vertices and faces as
    extracted)."""
    import trimesh

    surface = extract_surface(architecture, weights, resolution, **options)
    return trimesh.Trimesh(surface.vertices, surface.faces, vertex_normals=surface.normals, process=False)
