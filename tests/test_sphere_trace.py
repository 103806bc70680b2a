"""The sphere tracer against analytic ray casting: silhouettes, depths, normals, CSG, cameras, edge cases."""

import numpy as np
import pytest

from backend.rendering.renderer import Camera
from backend.shapes.architecture import Architecture
from backend.shapes.network import evaluate_sdf
from kernels.device import init_warp
from kernels.mlp_eval import neural_field
from kernels.sphere_trace import CSG, RayCamera, TraceObjects, TraceSettings, trace
from tests.fields import BOX, FIELD, SPHERE, TORUS, fit_sphere, params

init_warp()
SIZE = 128
SETTINGS = TraceSettings(epsilon=1e-4, ambient_occlusion=False)


def _camera(position=(0.0, -4.0, 1.0), target=(0.0, 0.0, 0.0), size=SIZE, **options) -> RayCamera:
    return Camera.look_at(position, target, **options).rays(size, size)


def _objects(*placed) -> TraceObjects:
    """placed: (shape row, 4x4 local-to-world, operation, smooth radius, local bounding radius)."""
    return TraceObjects(
        shape=np.array([p[0] for p in placed]),
        local_to_world=np.stack([p[1] for p in placed]),
        operation=np.array([p[2] for p in placed]),
        smooth_radius=np.array([p[3] for p in placed], dtype=float),
        colour=np.tile([0.8, 0.6, 0.4], (len(placed), 1)),
        radius=np.array([p[4] for p in placed], dtype=float),
    )


def _translate(x=0.0, y=0.0, z=0.0, scale=(1.0, 1.0, 1.0)) -> np.ndarray:
    m = np.diag([*scale, 1.0])
    m[:3, 3] = x, y, z
    return m


def _rays(camera: RayCamera):
    """Reference ray origins, unit directions and depth per unit length (numpy, float64), row 0 at the top."""
    j, i = np.mgrid[0 : camera.height, 0 : camera.width]
    u = (i + 0.5 - camera.width / 2) * camera.pixel_size
    v = (camera.height / 2 - j - 0.5) * camera.pixel_size
    m = np.asarray(camera.camera_to_world)
    if camera.perspective:
        local = np.stack([u, v, -np.ones_like(u)], -1)
        local /= np.linalg.norm(local, axis=-1, keepdims=True)
        origins = np.broadcast_to(m[:3, 3], local.shape)
    else:
        local = np.broadcast_to([0.0, 0.0, -1.0], u.shape + (3,))
        origins = np.stack([u, v, np.zeros_like(u)], -1) @ m[:3, :3].T + m[:3, 3]
    return origins, local @ m[:3, :3].T, -local[..., 2]


def _sdf(row, p):
    kind, a, b, c = row
    if kind == SPHERE:
        return np.linalg.norm(p, axis=-1) - a
    if kind == BOX:
        d = np.abs(p) - [a, b, c]
        return np.linalg.norm(np.maximum(d, 0), axis=-1) + np.minimum(d.max(axis=-1), 0)
    return np.hypot(np.linalg.norm(p[..., :2], axis=-1) - a, p[..., 2]) - b


def _reference_trace(sdf, camera: RayCamera, steps=400, eps=1e-6):
    """Plain float64 sphere tracing of an exact SDF (numpy) -> hit mask, planar depth, hit points."""
    origins, directions, axial = _rays(camera)
    t = np.full(axial.shape, camera.clip_start / axial)
    for _ in range(steps):
        d = sdf(origins + directions * t[..., None])
        t = np.where(d > eps, t + d, t)
    hit = (sdf(origins + directions * t[..., None]) < 1e-4) & (t * axial < camera.clip_end)  # overshoots count
    return hit, np.where(hit, t * axial, np.inf), origins + directions * t[..., None]


def _interior(mask):
    """Pixels whose 8 neighbours are also set: away from silhouettes, where grazing rays make the hit
    depth (|f| < eps reached up to eps / cos(angle) early) legitimately less exact."""
    inner = mask.copy()
    inner[1:-1, 1:-1] &= mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    inner[1:-1, 1:-1] &= mask[:-2, :-2] & mask[2:, 2:] & mask[:-2, 2:] & mask[2:, :-2]
    inner[[0, -1], :] = False
    inner[:, [0, -1]] = False
    return inner


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.mark.parametrize(
    "row", [(SPHERE, 0.8, 0, 0), (BOX, 0.6, 0.4, 0.5), (TORUS, 0.6, 0.25, 0)], ids=["sphere", "box", "torus"]
)
def test_silhouette_depth_and_normals_of_exact_shapes(row, device):
    camera = _camera()
    result = trace(FIELD, params(row), _objects((0, np.eye(4), CSG.UNION, 0.0, 1.0)), camera, SETTINGS, device)
    hit, depth, points = _reference_trace(lambda p: _sdf(row, p), camera)
    mask = result.object_id == 0
    assert _iou(mask, hit) >= 0.99
    both = _interior(mask & hit)
    error = np.abs(result.depth[both] - depth[both])
    assert np.percentile(error, 99) < 1e-3 and error.max() < 1e-2  # the torus hole has grazing rays too
    assert np.isinf(result.depth[~mask]).all() and (result.rgba[~mask] == 0).all() and (result.rgba[mask, 3] == 1).all()
    if row[0] == SPHERE:
        normals = points / np.linalg.norm(points, axis=-1, keepdims=True)
        assert np.sum(result.normal[both] * normals[both], axis=-1).min() > 0.999


def test_orthographic_camera_and_non_uniform_scale():
    camera = Camera.look_at((0, -5, 0), (0, 0, 0), type="ORTHO", ortho_scale=4.0).rays(SIZE, SIZE)
    centre, semi_axes = np.array([0.3, 0.0, 0.0]), np.array([1.2, 0.6, 0.3])
    stretch = _translate(*centre, scale=tuple(semi_axes / 0.6))  # a sphere of radius 0.6, stretched
    result = trace(FIELD, params((SPHERE, 0.6, 0, 0)), _objects((0, stretch, CSG.UNION, 0.0, 1.0)), camera, SETTINGS)
    origins, directions, axial = _rays(camera)  # ray / ellipsoid in closed form
    o, d = (origins - centre) / semi_axes, directions / semi_axes
    a, b, c = np.sum(d * d, -1), np.sum(o * d, -1), np.sum(o * o, -1) - 1
    disc = b * b - a * c
    hit = disc > 0
    depth = np.where(hit, (-b - np.sqrt(np.maximum(disc, 0))) / a * axial, np.inf)
    mask = result.object_id == 0
    assert _iou(mask, hit) >= 0.99
    both = _interior(mask & hit)
    assert np.abs(result.depth[both] - depth[both]).max() < 1e-3


CSG_CASES = {
    "union": (CSG.UNION, 0.0, np.minimum),
    "intersection": (CSG.INTERSECTION, 0.0, np.maximum),
    "difference": (CSG.DIFFERENCE, 0.0, lambda a, b: np.maximum(a, -b)),
    "smooth_union": (CSG.SMOOTH_UNION, 0.3, None),
}


@pytest.mark.parametrize("name", CSG_CASES)
def test_csg_matches_analytic_csg(name):
    operation, k, combine = CSG_CASES[name]
    if combine is None:

        def combine(a, b):
            h = np.clip(0.5 + 0.5 * (b - a) / k, 0, 1)
            return b + h * (a - b) - k * h * (1 - h)

    camera = _camera(position=(0.0, -5.0, 0.5))
    placed = [(0, _translate(-0.35), CSG.UNION, 0.0, 1.0), (1, _translate(0.35), operation, k, 1.0)]
    rows = [(SPHERE, 0.6, 0, 0), (BOX, 0.45, 0.45, 0.45)]
    result = trace(FIELD, params(*rows), _objects(*placed), camera, SETTINGS)
    scene = lambda p: combine(_sdf(rows[0], p - [-0.35, 0, 0]), _sdf(rows[1], p - [0.35, 0, 0]))  # noqa: E731
    hit, depth, _ = _reference_trace(scene, camera)
    mask = result.object_id >= 0
    assert _iou(mask, hit) >= 0.99
    both = _interior(mask & hit)
    assert np.percentile(np.abs(result.depth[both] - depth[both]), 99) < 1e-3  # creases graze too
    assert set(np.unique(result.object_id[mask])) <= {0, 1}


def test_several_objects_get_their_ids_and_hide_each_other():
    camera = _camera(position=(0.0, -6.0, 0.0))
    placed = [(0, _translate(-0.6), CSG.UNION, 0.0, 1.0), (0, _translate(0.6, 1.5), CSG.UNION, 0.0, 1.0)]
    result = trace(FIELD, params((SPHERE, 0.5, 0, 0)), _objects(*placed), camera, SETTINGS)
    left, right = result.object_id[:, : SIZE // 2], result.object_id[:, SIZE // 2 :]
    assert (left == 0).sum() > 500 and (right == 1).sum() > 200
    assert not (left == 1).any() and not (right == 0).any()


def test_camera_inside_a_shape_sees_the_inner_wall():
    camera = _camera(position=(0.0, 0.0, 0.0), target=(0.0, 1.0, 0.0), clip_start=0.01)
    result = trace(FIELD, params((SPHERE, 2.0, 0, 0)), _objects((0, np.eye(4), CSG.UNION, 0.0, 3.0)), camera, SETTINGS)
    _, _, axial = _rays(camera)
    assert (result.object_id == 0).all()
    assert np.abs(result.depth - 2.0 * axial).max() < 1e-3
    assert np.isfinite(result.rgba).all()


def test_empty_outputs():
    camera = _camera()
    behind = _objects((0, _translate(0.0, -8.0, 2.0), CSG.UNION, 0.0, 1.0))  # behind the camera at (0, -4, 1)
    result = trace(FIELD, params((SPHERE, 0.5, 0, 0)), behind, camera, SETTINGS)
    assert (result.object_id == -1).all() and np.isinf(result.depth).all() and (result.rgba == 0).all()
    empty = trace(FIELD, params((SPHERE, 0.5, 0, 0)), _objects_empty(), camera)
    assert empty.rgba.shape == (SIZE, SIZE, 4) and (empty.object_id == -1).all()
    nothing = trace(FIELD, params((SPHERE, 0.5, 0, 0)), behind, _camera(size=0))
    assert nothing.rgba.shape == (0, 0, 4) and nothing.depth.shape == (0, 0)


def _objects_empty() -> TraceObjects:
    return TraceObjects(
        np.zeros(0, int), np.zeros((0, 4, 4)), np.zeros(0, int), np.zeros(0), np.zeros((0, 3)), np.zeros(0)
    )


def test_rays_that_never_converge_are_misses_or_hits_not_garbage():
    camera = _camera()
    few = TraceSettings(epsilon=1e-9, max_steps=3, ambient_occlusion=False)
    result = trace(FIELD, params((TORUS, 0.6, 0.25, 0)), _objects((0, np.eye(4), CSG.UNION, 0.0, 1.0)), camera, few)
    assert np.isfinite(result.rgba).all() and np.isfinite(result.normal).all()
    assert set(np.unique(result.object_id)) <= {-1, 0}
    assert np.isinf(result.depth[result.object_id == -1]).all()


def test_bad_requests_are_refused():
    objects = _objects((0, np.eye(4), CSG.UNION, 0.0, 1.0))
    with pytest.raises(ValueError, match="rows"):
        trace(FIELD, params((SPHERE, 0.5, 0, 0)), _objects((3, np.eye(4), CSG.UNION, 0.0, 1.0)), _camera())
    with pytest.raises(ValueError, match="invertible"):
        trace(FIELD, params((SPHERE, 0.5, 0, 0)), _objects((0, np.zeros((4, 4)), CSG.UNION, 0.0, 1.0)), _camera())
    with pytest.raises(ValueError, match="max_steps"):
        trace(FIELD, params((SPHERE, 0.5, 0, 0)), objects, _camera(), TraceSettings(max_steps=0))


def test_fitted_net_matches_a_torch_reference_march(device):
    arch, weights = Architecture(), fit_sphere()
    net = neural_field(arch)
    camera = _camera(position=(0.0, -2.5, 0.0), size=64)
    shaded = TraceSettings(epsilon=1e-4, ambient_occlusion=True, soft_shadows=True)
    result = trace(net, net.pack([weights]), _objects((0, np.eye(4), CSG.UNION, 0.0, 1.0)), camera, shaded, device)
    torch_sdf = lambda p: evaluate_sdf(arch, weights, p.reshape(-1, 3)).reshape(p.shape[:-1]).astype(np.float64)  # noqa: E731
    hit, depth, _ = _reference_trace(lambda p: 0.9 * torch_sdf(p), camera, steps=150, eps=2e-5)
    mask = result.object_id == 0
    assert _iou(mask, hit) >= 0.99
    both = _interior(mask & hit)
    assert np.percentile(np.abs(result.depth[both] - depth[both]), 99) < 2e-3  # |grad f| != 1: eps differs
    analytic, _, _ = _reference_trace(lambda p: _sdf((SPHERE, 0.5, 0, 0), p), camera)
    assert _iou(mask, analytic) >= 0.95  # the net is a rough fit (surface error ~0.007)
    lit = result.rgba[mask]
    assert 0.0 <= lit[:, :3].min() and lit[:, :3].max() <= 1.0 and lit[:, :3].std() > 0.05
