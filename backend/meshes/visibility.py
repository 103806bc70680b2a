"""The surface a mesh shows: its faces less those buried inside it.

Assemblies and kitbashed models are often several closed parts pushed into one another (a gear on its
shaft, a character's teeth inside the head, a truck's axles through its body). The faces of one part that
lie inside another bound nothing anyone can see: the union's inside is on both of their sides. Left in,
they are a source surface no fit can reach (its field is negative on both sides of them) and they drag
the target field to zero inside the solid, where a net then creases and crumples. Such a *buried* face is
found with the winding number of the whole mesh: a point just off its centre is inside on both sides.

Frame: the normalised frame of :mod:`backend.meshes.loading`; offsets in its units.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from backend.meshes.loading import NormalisedMesh
from kernels.mesh_sdf import MeshDistance, SignMethod

# How far off a face's centre its two sides are probed: well inside the thinnest part a 128^3 grid holds
# (a cell is 0.014), well outside the winding number's own blur at a face (it jumps by 1/2 across it).
PROBE_OFFSET = 0.002


def buried_faces(vertices: np.ndarray, faces: np.ndarray, distance: MeshDistance | None = None) -> np.ndarray:
    """(f,) bool: the faces with the mesh's inside on both sides, by the winding number ``PROBE_OFFSET`` off
    their centres. vertices (v, 3) and faces (f, 3), normalised frame; ``distance`` the same mesh, if built."""
    distance = distance or MeshDistance(vertices, faces)
    corners = vertices[faces]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-30)
    centres = corners.mean(axis=1)
    buried = distance.distance(centres + PROBE_OFFSET * normals, SignMethod.WINDING_NUMBER) < 0
    # Most faces are outside on their front (loading orients pieces outward): probe only the rest's backs.
    candidates = np.flatnonzero(buried)
    buried[candidates] = distance.distance(centres[candidates] - PROBE_OFFSET * normals[candidates]) < 0
    return buried


def visible_surface(mesh: NormalisedMesh) -> NormalisedMesh:
    """``mesh`` without its buried faces (:func:`buried_faces`); a clean mesh (one closed body) has none and
    comes back as is, as does one that would have no face left."""
    if mesh.clean:
        return mesh
    buried = buried_faces(mesh.vertices, mesh.faces)
    if not buried.any() or buried.all():
        return mesh
    return replace(mesh, faces=mesh.faces[~buried])
