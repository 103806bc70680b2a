"""The neural viewport's camera math (blender_addon/viewport/camera.py), no Blender: a viewport's matrices
become the render API's camera such that every traced pixel lands where the viewport projects what it
shows, and the tracer's depth becomes the viewport's window depth."""

from __future__ import annotations

import numpy as np
import pytest

from backend.rendering.renderer import Camera
from blender_addon.viewport.camera import clip_range, frame_key, view_frame, window_depth
from tests.test_addon_structure import _import_without_blender


def frustum(left, right, bottom, top, near, far):
    """OpenGL's glFrustum (what Blender's perspective window_matrix is)."""
    return np.array(
        [
            [2 * near / (right - left), 0, (right + left) / (right - left), 0],
            [0, 2 * near / (top - bottom), (top + bottom) / (top - bottom), 0],
            [0, 0, -(far + near) / (far - near), -2 * far * near / (far - near)],
            [0, 0, -1, 0],
        ]
    )


def orthographic(left, right, bottom, top, near, far):
    return np.array(
        [
            [2 / (right - left), 0, 0, -(right + left) / (right - left)],
            [0, 2 / (top - bottom), 0, -(top + bottom) / (top - bottom)],
            [0, 0, -2 / (far - near), -(far + near) / (far - near)],
            [0, 0, 0, 1],
        ]
    )


def blender_view(lens, width, height, near=0.1, far=100.0, sensor=36.0, shift=(0.0, 0.0)):
    """A perspective window matrix as Blender computes a view's (sensor fit AUTO, optional lens shift)."""
    size = sensor * near / lens / max(width, height)  # one pixel at the near plane
    dx, dy = shift[0] * size * max(width, height), shift[1] * size * max(width, height)
    return frustum(
        -width * size / 2 + dx, width * size / 2 + dx, -height * size / 2 + dy, height * size / 2 + dy, near, far
    )


def look_at_view(eye, target):
    """world -> view for a camera at ``eye`` looking at ``target``, +Z up."""
    camera = Camera.look_at(eye, target)
    return np.linalg.inv(camera.matrix_world)


def pixel_points(frame, distance):
    """World points at ``distance`` along the view axis through each pixel centre of the frame's image (the
    tracer's rays: kernels/sphere_trace.py camera_ray) and the pixels' (column, row) centres, row 0 on top."""
    camera = Camera(
        np.array(frame.camera["matrix_world"]), **{k: v for k, v in frame.camera.items() if k != "matrix_world"}
    )
    rays = camera.rays(frame.width, frame.height)
    col, row = np.meshgrid(np.arange(frame.width) + 0.5, np.arange(frame.height) + 0.5)
    u = (col - 0.5 * frame.width) * rays.pixel_size
    v = (0.5 * frame.height - row) * rays.pixel_size
    if rays.perspective:
        local = np.stack([u * distance, v * distance, -distance * np.ones_like(u), np.ones_like(u)], axis=-1)
    else:
        local = np.stack([u, v, -distance * np.ones_like(u), np.ones_like(u)], axis=-1)
    return local @ rays.camera_to_world.T, col, row


def check_pixels_land(frame, view, window, distance):
    """Each traced pixel's world point projects (window @ view) to its own place in the frame's NDC rect, and its
    depth (distance from the frame's camera) to the window depth the viewport gives the point."""
    world, col, row = pixel_points(frame, distance)
    clip = world @ (window @ view).T
    ndc = clip[..., :3] / clip[..., 3:]
    left, bottom, right, top = frame.ndc_rect
    expect_x = left + col / frame.width * (right - left)
    expect_y = top - row / frame.height * (top - bottom)
    assert np.abs(ndc[..., 0] - expect_x).max() < 1e-6
    assert np.abs(ndc[..., 1] - expect_y).max() < 1e-6
    depth = window_depth(np.full(col.shape, distance, np.float32), frame)
    assert np.abs(depth - (0.5 * ndc[..., 2] + 0.5)).max() < 1e-5


@pytest.mark.parametrize("width, height", [(256, 256), (400, 300), (300, 500)])
def test_centred_perspective_view_is_a_camera_with_the_same_field_of_view(width, height):
    view = look_at_view((4, -5, 3), (0, 0, 0.5))
    window = blender_view(35.0, width, height, near=0.05, far=200.0)
    frame = view_frame(view, window, width, height)
    assert (frame.width, frame.height) == (width, height)
    assert frame.ndc_rect == pytest.approx((-1, -1, 1, 1))
    # Blender's AUTO fit: the lens on a 36 mm sensor across the larger side; ours puts the sensor across the width
    assert frame.camera["lens"] == pytest.approx(35.0 * max(width, height) / width)
    assert frame.camera["clip_start"] == pytest.approx(0.05) and frame.camera["clip_end"] == pytest.approx(200.0)
    assert np.allclose(np.array(frame.camera["matrix_world"]) @ view, np.eye(4))
    for distance in (0.5, 6.0, 150.0):
        check_pixels_land(frame, view, window, distance)


def test_coarse_frame_covers_the_same_view_with_fewer_pixels():
    view, window = look_at_view((0, -6, 2), (0, 0, 0)), blender_view(50.0, 512, 384)
    coarse = view_frame(view, window, 512, 384, scale=0.25)
    assert (coarse.width, coarse.height) == (128, 96) and coarse.ndc_rect == pytest.approx((-1, -1, 1, 1))
    check_pixels_land(coarse, view, window, 3.0)


def test_off_centre_frustum_is_covered_by_a_wider_centred_image():
    """Camera view: the frame panned and lens shift make the frustum off centre; the centred render reaches
    past the region on one side and every pixel still lands where the viewport puts it."""
    view, window = look_at_view((3, -4, 2), (0, 0, 0)), blender_view(50.0, 320, 240, shift=(0.3, -0.1))
    frame = view_frame(view, window, 320, 240)
    left, bottom, right, top = frame.ndc_rect
    assert left <= -1 + 1e-9 and right >= 1 - 1e-9 and bottom <= -1 + 1e-9 and top >= 1 - 1e-9
    assert frame.width > 320 and frame.height > 240
    check_pixels_land(frame, view, window, 4.0)


def test_orthographic_view_starts_behind_its_origin():
    """An orthographic viewport clips from -clip_end/2: the rays start that far back, the depth is shifted back."""
    view = look_at_view((0, -10, 0), (0, 0, 0))
    window = orthographic(-4, 4, -3, 3, -50.0, 50.0)
    frame = view_frame(view, window, 400, 300)
    assert frame.camera["type"] == "ORTHO" and frame.camera["ortho_scale"] == pytest.approx(8.0)
    assert frame.camera["clip_start"] == pytest.approx(0.0) and frame.camera["clip_end"] == pytest.approx(100.0)
    assert frame.depth_offset == pytest.approx(-50.0)
    assert clip_range(window) == pytest.approx((-50.0, 50.0))
    for distance in (1.0, 45.0, 80.0):  # from the moved origin: 49 in front of the view's origin to 30 behind it
        check_pixels_land(frame, view, window, distance)


def test_window_depth_is_far_on_misses_and_ordered():
    frame = view_frame(np.eye(4), blender_view(50.0, 64, 64, near=0.1, far=100.0), 64, 64)
    depth = window_depth(np.array([[0.1, 1.0, 10.0, np.inf]], np.float32), frame)
    assert depth[0, 0] == pytest.approx(0.0, abs=1e-6) and depth[0, 3] == 1.0
    assert 0 < depth[0, 1] < depth[0, 2] < 1


def test_huge_off_centre_view_is_rendered_coarser_not_bigger():
    window = blender_view(50.0, 400, 400, shift=(30.0, 0.0))  # a frame panned far away
    frame = view_frame(np.eye(4), window, 400, 400)
    assert frame.width * frame.height <= 4 * 400 * 400 + 2 * (frame.width + frame.height)
    check_pixels_land(frame, np.eye(4), window, 2.0)


def test_degenerate_views_are_refused():
    with pytest.raises(ValueError):
        view_frame(np.eye(4), np.zeros((4, 4)), 100, 100)
    with pytest.raises(ValueError):
        view_frame(np.eye(4), blender_view(50.0, 10, 10), 0, 10)


def test_frame_key_ignores_float_noise():
    view, window = look_at_view((1, -2, 1), (0, 0, 0)), blender_view(50.0, 100, 100)
    assert frame_key(view, window, 100, 100) == frame_key(view + 1e-9, window, 100, 100)
    assert frame_key(view, window, 100, 100) != frame_key(view, window, 101, 100)


def test_camera_and_progressive_modules_need_no_blender():
    result = _import_without_blender(["blender_addon.viewport.camera", "blender_addon.viewport.progressive"])
    assert result.returncode == 0, result.stderr[-3000:]


def test_float32_matrices_give_the_region_size():
    """Blender's matrices are float32: their noise must not add a column or row."""
    view = look_at_view((2, -3, 1), (0, 0, 0)).astype(np.float32)
    for width, height in [(640, 531), (257, 1023), (1920, 1080)]:
        window = blender_view(50.0, width, height).astype(np.float32)
        for scale, expect in ((1.0, (width, height)), (0.25, (round(width / 4), round(height / 4)))):
            frame = view_frame(view, window, width, height, scale=scale)
            assert abs(frame.width - expect[0]) <= 1 and abs(frame.height - expect[1]) <= 1
            if scale == 1.0:
                assert (frame.width, frame.height) == expect
