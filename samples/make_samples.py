"""Write the bundled sample meshes (all generated here, CC0): `python samples/make_samples.py`.

- torus_knot.ply : a (2, 3) torus knot tube, clean and closed, genus 1
- mug.obj        : a mug (revolved body, torus handle) built with manifold3d booleans, clean
- chair.stl      : a chair of boxes (sharp edges, thin legs), manifold3d union, clean
- blob_messy.off : a noise-displaced sphere with three holes, 10% flipped faces and duplicated faces
"""

from __future__ import annotations

from pathlib import Path

import manifold3d
import numpy as np
import trimesh

HERE = Path(__file__).resolve().parent


def _to_trimesh(solid: manifold3d.Manifold) -> trimesh.Trimesh:
    mesh = solid.to_mesh()
    return trimesh.Trimesh(np.asarray(mesh.vert_properties)[:, :3], np.asarray(mesh.tri_verts), process=True)


def torus_knot(p: int = 2, q: int = 3, segments: int = 400, sides: int = 20, tube: float = 0.18) -> trimesh.Trimesh:
    t = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    r = np.cos(q * t) + 2
    curve = np.stack([r * np.cos(p * t), r * np.sin(p * t), -np.sin(q * t)], axis=1)
    tangent = np.roll(curve, -1, axis=0) - np.roll(curve, 1, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.cross(tangent, [0.0, 0.0, 1.0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    binormal = np.cross(tangent, normal)
    a = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    ring = np.cos(a)[None, :, None] * normal[:, None] + np.sin(a)[None, :, None] * binormal[:, None]
    vertices = (curve[:, None] + tube * 2 * ring).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(segments), np.arange(sides), indexing="ij")
    v00 = i * sides + j
    v10 = ((i + 1) % segments) * sides + j
    v01 = i * sides + (j + 1) % sides
    v11 = ((i + 1) % segments) * sides + (j + 1) % sides
    faces = np.concatenate([np.stack([v00, v10, v11], -1).reshape(-1, 3), np.stack([v00, v11, v01], -1).reshape(-1, 3)])
    mesh = trimesh.Trimesh(vertices, faces, process=True)
    if mesh.volume < 0:
        mesh.invert()
    return mesh


def mug() -> trimesh.Trimesh:
    body = manifold3d.Manifold.cylinder(1.0, 0.45, 0.45, 96)
    cavity = manifold3d.Manifold.cylinder(1.0, 0.4, 0.4, 96).translate((0, 0, 0.08))
    handle_ring = manifold3d.CrossSection.circle(0.05, 32).translate((0.25, 0)).revolve(64)
    handle = handle_ring.rotate((90, 0, 0)).translate((0.45, 0, 0.5))
    return _to_trimesh((body - cavity) + (handle - manifold3d.Manifold.cylinder(1.0, 0.42, 0.42, 96)))


def chair() -> trimesh.Trimesh:
    box = manifold3d.Manifold.cube
    parts = [box((1.0, 1.0, 0.08)).translate((0, 0, 0.5))]
    for x in (0.0, 0.9):
        for y in (0.0, 0.9):
            parts.append(box((0.1, 0.1, 0.5)).translate((x, y, 0)))
    parts.append(box((1.0, 0.08, 0.9)).translate((0, 0.92, 0.58)))
    parts.append(box((1.0, 0.1, 0.1)).translate((0, 0.0, 0.2)))
    return _to_trimesh(manifold3d.Manifold.batch_boolean(parts, manifold3d.OpType.Add))


def blob_messy(seed: int = 3) -> trimesh.Trimesh:
    rng = np.random.default_rng(seed)
    sphere = trimesh.creation.icosphere(subdivisions=5)
    v = sphere.vertices
    bumps = sum(np.sin(rng.uniform(2, 5) * v @ rng.normal(size=3) + rng.uniform(0, 6)) for _ in range(6))
    vertices = v * (1 + 0.08 * bumps)[:, None]
    faces = sphere.faces.copy()
    centres = vertices[faces].mean(axis=1)
    holes = np.zeros(len(faces), dtype=bool)
    for direction in rng.normal(size=(3, 3)):
        direction /= np.linalg.norm(direction)
        holes |= centres @ direction > 0.985 * np.linalg.norm(centres, axis=1)
    faces = faces[~holes]
    flip = rng.uniform(size=len(faces)) < 0.1
    faces[flip] = faces[flip][:, ::-1]
    duplicates = faces[rng.choice(len(faces), size=200, replace=False)]
    return trimesh.Trimesh(vertices, np.concatenate([faces, duplicates]), process=False)


def main() -> None:
    torus_knot().export(HERE / "torus_knot.ply")
    mug().export(HERE / "mug.obj")
    chair().export(HERE / "chair.stl")
    blob_messy().export(HERE / "blob_messy.off")


if __name__ == "__main__":
    main()
