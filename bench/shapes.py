"""Meshes and point clouds shared by the benchmark scripts: closed test meshes, a fitted shape's source
mesh in the shape's normalised frame, and the set-to-set Chamfer of surface point clouds."""

from pathlib import Path

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from backend.extraction import extract_mesh
from backend.mesh_loading import load_mesh_file
from backend.metrics import surface_samples
from backend.shape_file import NeuralShape

CLOUD = 2048  # points per shape for the set-to-set Chamfer of interpolation and generation


def varied_meshes(count: int) -> list[trimesh.Trimesh]:
    """``count`` closed meshes cycling through spheres, boxes, tori, capsules and cylinders of varying proportions."""
    makers = [
        lambda i: trimesh.creation.icosphere(subdivisions=3),
        lambda i: trimesh.creation.box(extents=(1, 0.3 + 0.1 * i, 0.6)),
        lambda i: trimesh.creation.torus(0.6, 0.1 + 0.02 * i, major_sections=64, minor_sections=32),
        lambda i: trimesh.creation.capsule(height=0.5 + 0.1 * i, radius=0.3),
        lambda i: trimesh.creation.cylinder(radius=0.4, height=0.3 + 0.1 * i),
    ]
    return [makers[i % len(makers)](i) for i in range(count)]


def source_in_shape_frame(shape: NeuralShape, collection: Path) -> tuple[trimesh.Trimesh, np.ndarray]:
    """The shape's source mesh (from the ``collection`` folder) in the shape's normalised frame, and 20 K points (n, 3) on it."""
    mesh = load_mesh_file(collection / shape.provenance["source_name"], transform=shape.transform).trimesh()
    return mesh, surface_samples(mesh.vertices, mesh.faces, 20_000, seed=1)


def in_frame_of(whole: NeuralShape, shape: NeuralShape, resolution: int = 128) -> trimesh.Trimesh:
    """``shape``'s surface (marching cubes at ``resolution``^3) moved into ``whole``'s normalised frame (through the source frame)."""
    surface = extract_mesh(shape.architecture, shape.weights, resolution, transform=shape.transform)
    surface.vertices = whole.transform.to_normalised(surface.vertices)
    return surface


def cloud(mesh: trimesh.Trimesh, seed: int = 0) -> np.ndarray:
    """:data:`CLOUD` points (n, 3) uniform over the mesh's area; none (0, 3) for an empty mesh."""
    return surface_samples(mesh.vertices, mesh.faces, CLOUD, seed=seed) if len(mesh.faces) else np.zeros((0, 3), np.float32)


def cloud_chamfer(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric mean nearest-point distance between two clouds (n, 3) and (m, 3) (inf if one is empty)."""
    if len(a) == 0 or len(b) == 0:
        return float("inf")
    return float(cKDTree(b).query(a)[0].mean() + cKDTree(a).query(b)[0].mean())
