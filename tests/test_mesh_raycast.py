"""Ray casting of meshes (kernels.mesh_raycast) against exact answers: a sphere's silhouette and depth, lit
as the tracer lights, and faces seen from behind lit like their fronts."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from backend.rendering.renderer import Camera
from kernels.mesh_raycast import cast
from kernels.sphere_trace import TraceSettings

SIZE, RADIUS, DISTANCE = 96, 0.5, 3.0


def camera():
    return Camera.look_at((0.0, -DISTANCE, 0.0), (0.0, 0.0, 0.0), lens=50.0, clip_start=0.1, clip_end=10.0).rays(
        SIZE, SIZE
    )


@pytest.mark.parametrize("flip", [False, True])
def test_a_sphere_is_seen_where_and_as_far_as_it_is(flip):
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=RADIUS)
    faces = sphere.faces[:, ::-1] if flip else sphere.faces  # inward winding: lit the same
    rays = camera()
    rgba, depth = cast(sphere.vertices, faces, rays, colour=(1.0, 1.0, 1.0), settings=TraceSettings(ambient=0.2))
    pixels = (np.arange(SIZE) + 0.5 - 0.5 * SIZE) * rays.pixel_size  # image-plane coordinates at unit distance
    u, v = np.meshgrid(pixels, pixels)
    # A ray (u, v, -1) misses the sphere when its angle to the axis exceeds asin(r / d).
    inside = np.hypot(u, v) < np.tan(np.arcsin(RADIUS / DISTANCE))
    assert (rgba[..., 3] > 0).sum() == pytest.approx(inside.sum(), rel=0.03)
    assert np.isinf(depth[~inside & (rgba[..., 3] == 0)]).all()
    centre = SIZE // 2
    assert depth[centre, centre] == pytest.approx(DISTANCE - RADIUS, abs=2e-3)
    light = np.asarray(TraceSettings().light_direction) / np.linalg.norm(TraceSettings().light_direction)
    expected = 0.2 + 0.8 * max(light @ np.array([0.0, -1.0, 0.0]), 0.0)  # the centre's normal faces the camera
    assert rgba[centre, centre, 0] == pytest.approx(expected, abs=0.02)


def test_an_empty_mesh_or_image_gives_background():
    rgba, depth = cast(np.zeros((0, 3)), np.zeros((0, 3), np.int64), camera())
    assert rgba.shape == (SIZE, SIZE, 4) and not rgba.any() and np.isinf(depth).all()
