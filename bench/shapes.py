"""Meshes and point clouds shared by the benchmark scripts: closed test meshes, a fitted shape's source
mesh in the shape's normalised frame, the set-to-set Chamfer of surface point clouds, and cut held-out
meshes completed on the latent family (the latent bench and the pictures)."""

import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from backend.datasets.partials import CUTS, cut_faces
from backend.fitting.batched import FitSettings, OpenMeshes, fit_shapes
from backend.fitting.pipeline import fitted_shape
from backend.meshes.extraction import extract_mesh
from backend.meshes.loading import NormalisedMesh, bounding_similarity, load_mesh_file
from backend.meshes.metrics import surface_samples
from backend.nf2vec.latent import LatentFamily
from backend.nf2vec.ops.latent_ops import (
    CompletionReport,
    LatentCompletionSettings,
    complete_latent,
    surface_points_and_normals,
)
from backend.shapes.architecture import ModelFamily
from backend.shapes.frame import Similarity
from backend.shapes.shape_file import NeuralShape

CLOUD = 2048  # points per shape for the set-to-set Chamfer of interpolation and generation
COMPLETION_POINTS = 20_000  # surface points (with normals) of the cut mesh handed to the completion
# As scripts/train_default_nf2vec fits the collection: a cut's opening lidded (solid), as the models were trained on.
PARTIAL_FIT = FitSettings(samples=32_768, max_steps=600, open_meshes=OpenMeshes.SOLID)


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
    return (
        surface_samples(mesh.vertices, mesh.faces, CLOUD, seed=seed)
        if len(mesh.faces)
        else np.zeros((0, 3), np.float32)
    )


def cloud_chamfer(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric mean nearest-point distance between two clouds (n, 3) and (m, 3) (inf if one is empty)."""
    if len(a) == 0 or len(b) == 0:
        return float("inf")
    return float(cKDTree(b).query(a)[0].mean() + cKDTree(a).query(b)[0].mean())


def cut_in_shape_frame(whole: NeuralShape, collection: Path, index: int) -> tuple[trimesh.Trimesh, np.ndarray]:
    """The whole's source mesh in the whole's normalised frame and the faces (faces,) bool that make-partials' cut of
    the index-th mesh of a collection keeps (its cut 0, seed 0; plane and sphere cuts take turns): the cut mesh is
    ``partial_mesh(mesh, keep)``."""
    source_name = whole.provenance["source_name"]
    mesh = load_mesh_file(collection / source_name, transform=whole.transform).trimesh()
    rng = np.random.default_rng([0, zlib.crc32(source_name.encode()), 0])
    return mesh, cut_faces(mesh, CUTS[index % 2], rng)


def fitted_cut(family: ModelFamily, cut: trimesh.Trimesh, seed: int) -> NeuralShape:
    """The cut mesh (in the whole's frame) fitted as the collection's shapes were (:data:`PARTIAL_FIT`) in its own
    normalised frame: the partial shape a user would complete; its transform maps the whole's frame to that one."""
    frame = bounding_similarity(cut.vertices, "cut")
    mesh = NormalisedMesh("cut", frame.to_normalised(cut.vertices), np.asarray(cut.faces), frame, "", clean=False)
    [result] = fit_shapes(family, [mesh], replace(PARTIAL_FIT, seed=seed))
    return fitted_shape(mesh, result, family, source_name="cut.ply")


def complete_cut(
    latent: LatentFamily,
    family: ModelFamily,
    whole: NeuralShape,
    cut: trimesh.Trimesh,
    classes: list[str],
    settings: LatentCompletionSettings,
    fitted: NeuralShape,
    seed: int = 0,
) -> tuple[NeuralShape, CompletionReport]:
    """:func:`complete_latent` of a cut mesh (in ``whole``'s normalised frame), given as ``COMPLETION_POINTS`` surface
    points and normals in the cut's own normalised frame (as a fit of it has), with the candidate classes' priors
    the latent family knows (none: the overall prior). The completed shape is placed over the cut in the source frame.
    ``fitted`` is the cut's own fit (:func:`fitted_cut`): the fuse takes its field where the MAP is unsure, so it must
    not be the whole's. On a fallback the completion carries its weights: score and draw it as the partial input."""
    frame = bounding_similarity(cut.vertices, whole.name)
    points, normals = surface_points_and_normals(cut, COMPLETION_POINTS, seed=seed)
    # source -> the cut's frame: whole-normalised -> cut-normalised after source -> whole-normalised
    transform = Similarity(
        scale=whole.transform.scale * frame.scale, centre=whole.transform.centre + frame.centre / whole.transform.scale
    )
    partial = replace(whole, name=f"{whole.name}-cut", transform=transform, weights=fitted.weights)
    return complete_latent(
        latent,
        family,
        partial,
        frame.to_normalised(points).astype(np.float32),
        normals,
        class_name=[name for name in classes if name in latent.prior.class_names] or None,
        settings=settings,
    )
