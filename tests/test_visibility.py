"""Buried faces (backend.meshes.visibility): an assembly is fitted and measured on the surface it shows."""

from __future__ import annotations

import numpy as np
import trimesh

from backend.fitting.batched import FitSettings
from backend.fitting.pipeline import fit_and_evaluate
from backend.meshes.loading import normalise_mesh
from backend.meshes.visibility import PROBE_OFFSET, buried_faces, visible_surface
from backend.shapes.family_file import resolve_family

RADIUS = 0.5
OFFSET = 0.4  # between the two spheres' centres (not 0.5: vertices of the two would meet and join them)


def _two_spheres() -> trimesh.Trimesh:
    """Two closed spheres pushed into one another: each one's cap inside the other is (RADIUS - OFFSET / 2)
    high, 30% of its area."""
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=RADIUS)
    return trimesh.util.concatenate([sphere, sphere.copy().apply_translation([OFFSET, 0, 0])])


def test_the_faces_inside_the_other_part_are_buried_and_no_others():
    mesh = _two_spheres()
    vertices, faces = np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces)
    buried = buried_faces(vertices, faces)
    centres = mesh.triangles_center
    other = np.where(np.arange(len(faces))[:, None] < len(faces) // 2, [OFFSET, 0, 0], [0, 0, 0])
    depth = RADIUS - np.linalg.norm(centres - other, axis=1)  # > 0: inside the other sphere
    margin = 2 * PROBE_OFFSET + 0.02  # faces cut by the other sphere's surface may go either way
    assert buried[depth > margin].all() and not buried[depth < -margin].any()
    assert abs(buried.mean() - (RADIUS - OFFSET / 2) / (2 * RADIUS)) < 0.03


def test_a_clean_mesh_keeps_every_face():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=RADIUS)
    mesh = normalise_mesh(sphere.vertices, sphere.faces, name="sphere")
    assert mesh.clean and visible_surface(mesh) is mesh


def test_an_assembly_is_fitted_and_measured_on_the_surface_it_shows():
    """With the buried caps as part of the source, no fit could pass: a quarter of the source surface is
    inside the solid (recall 0.7 at best) and the target field dips to zero inside it. Without them the
    union of the two spheres meets every check."""
    source = _two_spheres()
    mesh = normalise_mesh(source.vertices, source.faces, name="two spheres")
    assert not mesh.clean
    visible = visible_surface(mesh)
    assert len(visible.faces) < 0.8 * len(mesh.faces)
    [fit] = fit_and_evaluate(resolve_family(None), [mesh], FitSettings(max_steps=4000))
    assert len(fit.mesh.faces) == len(visible.faces)  # measured against the visible surface
    assert fit.shape.provenance["fit_outcome"] == "targets met", fit.shape.provenance["fit_outcome"]
    assert fit.shape.metrics["fscore"] > 0.95
