"""Closed meshes of several kinds and proportions, shared by the benchmark scripts."""

import trimesh


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
