# Sphere tracing of neural SDF objects with CSG: one launch marches the rays, one shades the hits.
#
# Each object is a shape of one field (a neural SDF of one architecture) placed by a local-to-world
# matrix (local = the shape's normalised frame); any affine matrix works, non-uniform scale included:
# a local distance times the matrix's smallest singular value is a safe world distance. Each field is
# clipped to its object's bounding sphere (local radius ``radius``; 0.95 for neural shapes, whose
# surfaces lie within 0.9), and outside that sphere the distance to it stands in for the network, so
# empty space costs no evaluation.
#
# Objects combine left to right: the first object starts the result, each next one is united with,
# intersected with, subtracted from, or smoothly united (polynomial smooth minimum, radius in world
# units) with the result so far. Rays start where they enter the first bounding sphere (or at the
# near clip plane), stop at the last exit (or the far clip plane); each step advances by
# ``|f| * safety`` on the side the ray started (so a camera inside a shape sees its inner wall and an
# overshoot steps back); a hit is |f| < eps; rays that run out of steps (grazing a surface) are misses:
# with non-uniform scale |f| is only a lower bound of the distance, so "close enough" cannot be judged
# from it. The whole march runs in the kernel: the host waits once per frame.
#
# Rays march in packets: a thread keeps LANES rays in flight and evaluates the network for all of them
# at once (``NeuralField.values``: each weight, loaded once, serves every lane; 1.7x the evaluations/s
# of one ray per thread on the CPU); a lane whose ray ends takes the thread's next pixel. The shading
# pass (normals, light, occlusion, shadows) then takes LANES neighbouring pixels per thread, normals
# and occlusion samples in packets too.
#
# Sign convention: negative inside. Outputs: linear RGBA (Lambert + ambient, optional ambient
# occlusion and soft shadow), depth along the camera's viewing axis (inf on misses), outward unit
# normals in world space (zero on misses), object id (-1 on misses).

# Warp kernels declare a variable that a branch or dynamic loop reassigns with its type: ``int(0)``.
# ruff: noqa: UP018, RUF046

import functools
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import warp as wp

from kernels.device import default_device, run_chunked
from kernels.mlp_eval import FIELD_KERNEL_OPTIONS, LANES, Packet, PacketValues

FAR = wp.constant(1.0e30)
# The tracer's kernels also fuse multiply-adds into FMAs (Warp emits every operation as a statement of
# its own, which clang fuses only when allowed): +20% evaluations/s. Not for batch evaluation: marching
# cubes relies on values and values-with-gradients rounding alike, which contraction does not promise.
TRACE_KERNEL_OPTIONS = {
    **FIELD_KERNEL_OPTIONS,
    "cpu_compiler_flags": (wp.config.cpu_compiler_flags or "-march=native") + " -ffp-contract=fast",
}
PacketInts = wp.types.vector(length=LANES, dtype=int)  # per-lane counters of a ray packet


class CSG(IntEnum):
    """How an object combines with the objects before it."""

    UNION = 0
    INTERSECTION = 1
    DIFFERENCE = 2  # the result so far minus this object
    SMOOTH_UNION = 3


@dataclass
class TraceObjects:
    """The objects of a scene, in CSG order. k objects:

    shape (k,) int: row of the field's parameters; local_to_world (k, 4, 4) float: shape frame -> world;
    operation (k,) int (:class:`CSG`, ignored for the first); smooth_radius (k,) float, world units;
    colour (k, 3) float linear RGB; radius (k,) float: bounding sphere radius in the shape frame, around
    its origin; each field is clipped to its sphere (max(f, |x| - radius)), which drops stray surfaces.
    """

    shape: np.ndarray
    local_to_world: np.ndarray
    operation: np.ndarray
    smooth_radius: np.ndarray
    colour: np.ndarray
    radius: np.ndarray

    def __len__(self) -> int:
        return len(self.shape)


@dataclass(frozen=True)
class RayCamera:
    """Rays of a pinhole (perspective) or orthographic camera looking down its local -Z, +Y up.

    camera_to_world (4, 4) float, rigid; pixel_size: image-plane size of one pixel at unit distance
    (perspective) or in world units (orthographic); clip distances along the viewing axis.
    """

    camera_to_world: np.ndarray
    perspective: bool
    pixel_size: float
    width: int
    height: int
    clip_start: float
    clip_end: float


@dataclass(frozen=True)
class TraceSettings:
    """Shading and marching settings; lengths in world units."""

    epsilon: float = 1.0e-4  # hit when |f| < epsilon
    max_steps: int = 160
    step_safety: float = 0.9  # step = |f| * safety (a neural SDF is not exactly 1-Lipschitz)
    light_direction: tuple[float, float, float] = (0.35, -0.45, 0.82)  # towards the light
    ambient: float = 0.2
    ambient_occlusion: bool = True
    soft_shadows: bool = False
    shadow_hardness: float = 8.0
    occlusion_scale: float = 0.1  # how far ambient occlusion looks, world units


@dataclass
class TraceResult:
    """rgba (h, w, 4) float32 linear, alpha 0 on misses; depth (h, w) float32 (inf on misses);
    normal (h, w, 3) float32 world, outward; object_id (h, w) int32 (-1 on misses)."""

    rgba: np.ndarray
    depth: np.ndarray
    normal: np.ndarray
    object_id: np.ndarray

    @staticmethod
    def empty(width: int, height: int) -> "TraceResult":
        return TraceResult(
            np.zeros((height, width, 4), np.float32),
            np.full((height, width), np.inf, np.float32),
            np.zeros((height, width, 3), np.float32),
            np.full((height, width), -1, np.int32),
        )


@wp.struct
class _Objects:
    count: int
    shape: wp.array(dtype=int)
    world_to_local: wp.array(dtype=wp.mat44)
    distance_scale: wp.array(dtype=float)  # smallest singular value of the local-to-world linear part
    gradient_to_world: wp.array(dtype=wp.mat33)  # distance_scale * (world-to-local linear part)^T
    centre: wp.array(dtype=wp.vec3)  # bounding sphere, world
    radius: wp.array(dtype=float)
    clip: wp.array(dtype=float)  # the same sphere's radius in the shape frame: the field is clipped to it
    operation: wp.array(dtype=int)  # CSG
    smooth: wp.array(dtype=float)
    colour: wp.array(dtype=wp.vec3)
    pad: float  # use the bounding sphere distance only beyond this (epsilon + largest smooth radius)


@wp.struct
class DeviceCamera:
    camera_to_world: wp.mat44
    perspective: bool  # else orthographic
    pixel_size: float
    width: int
    height: int
    clip_start: float
    clip_end: float


@wp.struct
class _Settings:
    epsilon: float
    max_steps: int
    step_safety: float
    light: wp.vec3
    ambient: float
    occlusion: bool
    occlusion_scale: float
    shadows: bool
    shadow_hardness: float
    shadow_distance: float


@wp.func
def _combine(d: float, g: wp.vec3, id: int, di: float, gi: wp.vec3, i: int, op: int, k: float):
    # CSG of the result so far (d, gradient g, object id) with object i; gradients follow the choice.
    if i == 0 or op == CSG.UNION:
        if di < d:
            return di, gi, i
    elif op == CSG.INTERSECTION:
        if di > d:
            return di, gi, i
    elif op == CSG.DIFFERENCE:
        if -di > d:
            return -di, -gi, i
    else:  # CSG.SMOOTH_UNION
        h = wp.clamp(0.5 + 0.5 * (di - d) / k, 0.0, 1.0)  # weight of the result so far
        blended = wp.lerp(di, d, h) - k * h * (1.0 - h)
        return blended, wp.lerp(gi, g, h), wp.where(h < 0.5, i, id)
    return d, g, id


@wp.func
def camera_ray(camera: DeviceCamera, pixel: int):
    # Origin, unit direction (world) and depth per unit of ray length of a pixel's ray (row 0 at the top).
    u = (float(pixel % camera.width) + 0.5 - 0.5 * float(camera.width)) * camera.pixel_size
    v = (0.5 * float(camera.height) - float(pixel / camera.width) - 0.5) * camera.pixel_size
    if camera.perspective:
        local_dir = wp.normalize(wp.vec3(u, v, -1.0))
        origin = wp.transform_point(camera.camera_to_world, wp.vec3())
    else:
        local_dir = wp.vec3(0.0, 0.0, -1.0)
        origin = wp.transform_point(camera.camera_to_world, wp.vec3(u, v, 0.0))
    return origin, wp.transform_vector(camera.camera_to_world, local_dir), -local_dir[2]


@wp.func
def _ray_span(objects: _Objects, camera: DeviceCamera, origin: wp.vec3, direction: wp.vec3, axial: float):
    # The span of the ray inside the bounding spheres, clipped by the clip planes (empty: enter >= leave).
    enter = float(FAR)
    leave = float(-FAR)
    for i in range(objects.count):
        oc = origin - objects.centre[i]
        b = wp.dot(oc, direction)
        disc = b * b - (wp.dot(oc, oc) - objects.radius[i] * objects.radius[i])
        if disc > 0.0:
            root = wp.sqrt(disc)
            if -b + root > 0.0:
                enter = wp.min(enter, wp.max(-b - root, 0.0))
                leave = wp.max(leave, -b + root)
    return wp.max(enter, camera.clip_start / axial), wp.min(leave, camera.clip_end / axial)


@functools.cache
def _tracer(field):
    """The marching and shading kernels of one field (cached; compile on first launch)."""

    @wp.func
    def object_value(params: wp.array2d(dtype=field.param_dtype), objects: _Objects, i: int, p: wp.vec3):
        outside = wp.length(p - objects.centre[i]) - objects.radius[i]
        if outside > objects.pad:
            return outside
        local = wp.transform_point(objects.world_to_local[i], p)
        f = wp.max(field.value(params, objects.shape[i], local), wp.length(local) - objects.clip[i])
        return f * objects.distance_scale[i]

    @wp.func
    def scene_value(params: wp.array2d(dtype=field.param_dtype), objects: _Objects, p: wp.vec3):
        d = float(FAR)
        for i in range(objects.count):
            d, _g, _id = _combine(
                d,
                wp.vec3(),
                -1,
                object_value(params, objects, i, p),
                wp.vec3(),
                i,
                objects.operation[i],
                objects.smooth[i],
            )
        return d

    @wp.func
    def shadow(params: wp.array2d(dtype=field.param_dtype), objects: _Objects, settings: _Settings, p: wp.vec3):
        # Soft shadow towards the light: the narrowest cone (distance / travelled) the ray passes through.
        lit = float(1.0)
        t = 20.0 * settings.epsilon
        for _j in range(settings.max_steps):
            h = scene_value(params, objects, p + settings.light * t)
            lit = wp.min(lit, settings.shadow_hardness * h / t)
            if lit < 0.001 or t > settings.shadow_distance:
                break
            t += wp.max(h * settings.step_safety, settings.epsilon)
        return wp.clamp(lit, 0.0, 1.0)

    @wp.func
    def scene_values(
        params: wp.array2d(dtype=field.param_dtype), objects: _Objects, points: Packet, active: PacketValues
    ):
        # scene_value() of a packet of points; the network runs once for all lanes when an active
        # lane needs it (inactive lanes hold stale points, their values are ignored).
        d = PacketValues()
        for r in range(LANES):
            d[r] = FAR
        for i in range(objects.count):
            outside = PacketValues()
            local = Packet()
            needed = bool(False)
            for r in range(LANES):
                outside[r] = wp.length(points[r] - objects.centre[i]) - objects.radius[i]
                local[r] = wp.transform_point(objects.world_to_local[i], points[r])
                if active[r] > 0.0 and outside[r] <= objects.pad:
                    needed = True
            f = PacketValues()
            if needed:
                f = field.values(params, objects.shape[i], local)
            for r in range(LANES):
                fi = outside[r]
                if fi <= objects.pad:
                    fi = wp.max(f[r], wp.length(local[r]) - objects.clip[i]) * objects.distance_scale[i]
                combined, _g, _id = _combine(
                    d[r], wp.vec3(), -1, fi, wp.vec3(), i, objects.operation[i], objects.smooth[i]
                )
                d[r] = combined
        return d

    @wp.func
    def scene_gradients(params: wp.array2d(dtype=field.param_dtype), objects: _Objects, points: Packet):
        # The scene's gradient (world, outward) at a packet of points, and the id of the object whose
        # surface each lies on; gradients follow the CSG choice (see _combine).
        d = PacketValues()
        gradients = Packet()
        ids = PacketInts()
        for r in range(LANES):
            d[r] = FAR
            ids[r] = -1
        for i in range(objects.count):
            local = Packet()
            for r in range(LANES):
                local[r] = wp.transform_point(objects.world_to_local[i], points[r])
            fg = field.values_and_gradients(params, objects.shape[i], local)
            for r in range(LANES):
                fi = fg[r, 0]
                gl = wp.vec3(fg[r, 1], fg[r, 2], fg[r, 3])
                if wp.length(local[r]) - objects.clip[i] > fi:
                    fi = wp.length(local[r]) - objects.clip[i]
                    gl = wp.normalize(local[r])
                gi = objects.gradient_to_world[i] * gl
                dr, gr, idr = _combine(
                    d[r],
                    gradients[r],
                    ids[r],
                    fi * objects.distance_scale[i],
                    gi,
                    i,
                    objects.operation[i],
                    objects.smooth[i],
                )
                d[r] = dr
                gradients[r] = gr
                ids[r] = idr
        return gradients, ids

    @wp.func
    def occlusions(
        params: wp.array2d(dtype=field.param_dtype),
        objects: _Objects,
        settings: _Settings,
        points: Packet,
        normals: Packet,
        active: PacketValues,
    ):
        # Five samples along each normal: how much closer the scene is than the free distance expected.
        occluded = PacketValues()
        weight = float(1.0)
        j = int(0)
        while j < 5:  # a while loop is not unrolled: five copies of the network would only cost compile time
            h = settings.occlusion_scale * (0.1 + 0.9 * float(j) / 4.0)
            samples = Packet()
            for r in range(LANES):
                samples[r] = points[r] + normals[r] * h
            v = scene_values(params, objects, samples, active)
            for r in range(LANES):
                occluded[r] = occluded[r] + weight * (h - v[r])
            weight *= 0.7
            j += 1
        out = PacketValues()
        for r in range(LANES):
            out[r] = wp.clamp(1.0 - 1.5 * occluded[r] / settings.occlusion_scale, 0.0, 1.0)
        return out

    @wp.kernel(enable_backward=False, module="unique", module_options=TRACE_KERNEL_OPTIONS)
    def march_kernel(
        params: wp.array2d(dtype=field.param_dtype),
        objects: _Objects,
        camera: DeviceCamera,
        settings: _Settings,
        offset: int,
        stop: int,
        per_thread: int,
        out_t: wp.array(dtype=float),
    ):
        # Each thread marches the pixels [first, last) in LANES lanes: a lane whose ray ends (hit or
        # miss) takes the thread's next pixel, so every network evaluation serves LANES rays.
        first = offset + wp.tid() * per_thread
        last = wp.min(first + per_thread, stop)
        next_pixel = first
        pixel = PacketInts()
        origin = Packet()
        direction = Packet()
        t = PacketValues()
        t_end = PacketValues()
        side = PacketValues()  # the side of the surfaces each ray starts on, once known
        evaluations = PacketInts()
        active = PacketValues()
        points = Packet()
        while True:
            running = int(0)
            for r in range(LANES):
                while active[r] == 0.0 and next_pixel < last:
                    o, dr, axial = camera_ray(camera, next_pixel)
                    enter, leave = _ray_span(objects, camera, o, dr, axial)
                    if enter < leave:
                        pixel[r] = next_pixel
                        origin[r] = o
                        direction[r] = dr
                        t[r] = enter
                        t_end[r] = leave
                        side[r] = 0.0
                        evaluations[r] = 0
                        active[r] = 1.0
                    else:
                        out_t[next_pixel] = wp.inf
                    next_pixel += 1
                if active[r] > 0.0:
                    running += 1
                    points[r] = origin[r] + direction[r] * t[r]
            if running == 0:
                break
            f = scene_values(params, objects, points, active)
            for r in range(LANES):
                if active[r] > 0.0:
                    evaluations[r] += 1
                    if side[r] == 0.0:
                        side[r] = wp.where(f[r] < 0.0, -1.0, 1.0)
                    if wp.abs(f[r]) < settings.epsilon:
                        out_t[pixel[r]] = t[r]
                        active[r] = 0.0
                    else:
                        t[r] = t[r] + side[r] * f[r] * settings.step_safety
                        if t[r] > t_end[r] or evaluations[r] >= settings.max_steps:
                            out_t[pixel[r]] = wp.inf  # left the spheres, or never converged
                            active[r] = 0.0

    @wp.kernel(enable_backward=False, module="unique", module_options=TRACE_KERNEL_OPTIONS)
    def shade_kernel(
        params: wp.array2d(dtype=field.param_dtype),
        objects: _Objects,
        camera: DeviceCamera,
        settings: _Settings,
        offset: int,
        stop: int,
        hit_t: wp.array(dtype=float),
        out_rgba: wp.array(dtype=wp.vec4),
        out_depth: wp.array(dtype=float),
        out_normal: wp.array(dtype=wp.vec3),
        out_id: wp.array(dtype=int),
    ):
        # LANES consecutive pixels per thread, their normals and occlusion in packets; lanes without a
        # hit compute on a hit lane's point and write background.
        first = offset + wp.tid() * LANES
        points = Packet()
        directions = Packet()
        hits = PacketValues()
        found = int(-1)
        for r in range(LANES):
            pixel = first + r
            if pixel < stop:
                t = hit_t[pixel]
                if t < wp.inf:
                    origin, direction, axial = camera_ray(camera, pixel)
                    points[r] = origin + direction * t
                    directions[r] = direction
                    hits[r] = 1.0
                    found = r
                    out_depth[pixel] = t * axial
                else:
                    out_rgba[pixel] = wp.vec4()
                    out_depth[pixel] = wp.inf
                    out_normal[pixel] = wp.vec3()
                    out_id[pixel] = -1
        if found >= 0:
            for r in range(LANES):
                if hits[r] == 0.0:
                    points[r] = points[found]
            gradients, ids = scene_gradients(params, objects, points)
            normals = Packet()
            facing = Packet()
            for r in range(LANES):
                n = wp.normalize(gradients[r])
                normals[r] = n
                facing[r] = wp.where(wp.dot(n, directions[r]) > 0.0, -n, n)
            ambient = PacketValues()
            for r in range(LANES):
                ambient[r] = settings.ambient
            if settings.occlusion:
                ambient = wp.cw_mul(ambient, occlusions(params, objects, settings, points, facing, hits))
            for r in range(LANES):
                if hits[r] > 0.0:
                    light = wp.max(wp.dot(facing[r], settings.light), 0.0)
                    if settings.shadows and light > 0.0:
                        light *= shadow(params, objects, settings, points[r] + facing[r] * (2.0 * settings.epsilon))
                    c = objects.colour[ids[r]] * (ambient[r] + (1.0 - settings.ambient) * light)
                    out_rgba[first + r] = wp.vec4(c[0], c[1], c[2], 1.0)
                    out_normal[first + r] = normals[r]
                    out_id[first + r] = ids[r]

    return march_kernel, shade_kernel


def device_camera(camera: RayCamera) -> DeviceCamera:
    """The camera as the kernels take it."""
    cam = DeviceCamera()
    cam.camera_to_world = wp.mat44(np.asarray(camera.camera_to_world, dtype=np.float32))
    cam.perspective = bool(camera.perspective)
    cam.pixel_size, cam.width, cam.height = float(camera.pixel_size), int(camera.width), int(camera.height)
    cam.clip_start, cam.clip_end = float(camera.clip_start), float(camera.clip_end)
    return cam


def _object_struct(objects: TraceObjects, epsilon: float, device: str) -> tuple[_Objects, np.ndarray]:
    """The objects on the device, and their bounding sphere radii (k,) float64 in world units on the host."""
    k = len(objects)
    local_to_world = np.asarray(objects.local_to_world, dtype=np.float64).reshape(k, 4, 4)
    linear = local_to_world[:, :3, :3]
    singular = np.linalg.svd(linear, compute_uv=False) if k else np.zeros((0, 3))
    if k and not (np.isfinite(local_to_world).all() and singular.min() > 1e-12):
        raise ValueError("object matrices must be finite and invertible")
    world_to_local = np.linalg.inv(local_to_world) if k else np.zeros((0, 4, 4))
    scale = singular.min(axis=1) if k else np.zeros(0)
    s = _Objects()
    s.count = k
    s.shape = wp.array(np.asarray(objects.shape, dtype=np.int32), dtype=int, device=device)
    s.world_to_local = wp.array(world_to_local.astype(np.float32), dtype=wp.mat44, device=device)
    s.distance_scale = wp.array(scale.astype(np.float32), dtype=float, device=device)
    s.gradient_to_world = wp.array(
        (scale[:, None, None] * world_to_local[:, :3, :3].transpose(0, 2, 1)).astype(np.float32),
        dtype=wp.mat33,
        device=device,
    )
    s.centre = wp.array(local_to_world[:, :3, 3].astype(np.float32), dtype=wp.vec3, device=device)
    radius = (singular.max(axis=1) if k else np.zeros(0)) * np.asarray(objects.radius, dtype=np.float64)
    s.radius = wp.array(radius, dtype=float, device=device)
    s.clip = wp.array(np.asarray(objects.radius, dtype=np.float32), dtype=float, device=device)
    s.operation = wp.array(np.asarray(objects.operation, dtype=np.int32), dtype=int, device=device)
    smooth = np.asarray(objects.smooth_radius, dtype=np.float32)
    s.smooth = wp.array(np.maximum(smooth, 1e-9), dtype=float, device=device)
    s.colour = wp.array(np.asarray(objects.colour, dtype=np.float32).reshape(k, 3), dtype=wp.vec3, device=device)
    s.pad = float(epsilon + (smooth.max() if k else 0.0))
    return s, radius


def trace(
    field,
    params: np.ndarray,
    objects: TraceObjects,
    camera: RayCamera,
    settings: TraceSettings = TraceSettings(),
    device: str | None = None,
) -> TraceResult:
    """Render the objects (shapes of one field) seen by a camera: one launch, one host wait per frame.

    params : (shapes, ...) float32 parameters of the field (``NeuralField.pack``); see
    :class:`TraceObjects`, :class:`RayCamera`, :class:`TraceSettings` and :class:`TraceResult`.
    An empty scene or a 0-pixel image gives empty (background) outputs.
    """
    width, height = int(camera.width), int(camera.height)
    if width < 0 or height < 0:
        raise ValueError(f"image size must not be negative, got {width}x{height}")
    if not (camera.clip_end > camera.clip_start >= 0.0 and camera.pixel_size > 0):
        raise ValueError(f"need 0 <= clip_start < clip_end and a positive pixel size, got {camera}")
    if settings.max_steps < 1 or not settings.epsilon > 0 or not 0 < settings.step_safety <= 1:
        raise ValueError(f"need max_steps >= 1, epsilon > 0 and 0 < step_safety <= 1, got {settings}")
    count = width * height
    if count == 0 or len(objects) == 0:
        return TraceResult.empty(width, height)
    params = np.asarray(params, dtype=np.float32)
    if params.ndim < 2 or not (0 <= np.min(objects.shape) and np.max(objects.shape) < len(params)):
        raise ValueError(
            f"object shapes {np.unique(objects.shape).tolist()} are not rows of the {params.shape[0]} shape parameters"
        )
    device = default_device(device)
    march_kernel, shade_kernel = _tracer(field)
    params_wp = wp.array(params, dtype=field.param_dtype, device=device)
    objects_wp, radius = _object_struct(objects, settings.epsilon, device)
    cam = device_camera(camera)
    s = _Settings()
    light = np.asarray(settings.light_direction, dtype=np.float64)
    s.light = wp.vec3(*(light / np.linalg.norm(light)))
    s.epsilon, s.max_steps, s.step_safety = (
        float(settings.epsilon),
        int(settings.max_steps),
        float(settings.step_safety),
    )
    s.ambient, s.occlusion, s.occlusion_scale = (
        float(settings.ambient),
        bool(settings.ambient_occlusion),
        float(settings.occlusion_scale),
    )
    s.shadows, s.shadow_hardness = bool(settings.soft_shadows), float(settings.shadow_hardness)
    centres = np.asarray(objects.local_to_world, dtype=np.float64)[:, :3, 3]
    s.shadow_distance = float(2.0 * (np.ptp(centres, axis=0).max() + radius.max()))

    hit_t = wp.empty(count, dtype=float, device=device)
    rgba = wp.empty(count, dtype=wp.vec4, device=device)
    depth = wp.empty(count, dtype=float, device=device)
    normal = wp.empty(count, dtype=wp.vec3, device=device)
    ids = wp.empty(count, dtype=int, device=device)
    # On the CPU a thread marches a run of 64 x LANES pixels in LANES lanes (few idle lanes at the end
    # of a run); on a GPU LANES pixels, for parallelism.
    per_thread = LANES * (64 if device == "cpu" else 1)

    def march(start: int, stop: int) -> None:
        inputs = [params_wp, objects_wp, cam, s, start, stop, per_thread]
        wp.launch(march_kernel, dim=-(-(stop - start) // per_thread), inputs=inputs, outputs=[hit_t], device=device)

    def shade(start: int, stop: int) -> None:
        inputs = [params_wp, objects_wp, cam, s, start, stop, hit_t]
        wp.launch(
            shade_kernel,
            dim=-(-(stop - start) // LANES),
            inputs=inputs,
            outputs=[rgba, depth, normal, ids],
            device=device,
        )

    # Rows differ in cost (silhouettes, empty sky): small chunks keep both CPU threads busy.
    run_chunked(device, count, march, chunks_per_worker=16, min_chunk=max(width, 256))
    run_chunked(device, count, shade, chunks_per_worker=16, min_chunk=max(width, 256))
    return TraceResult(  # host sync
        rgba.numpy().reshape(height, width, 4),
        depth.numpy().reshape(height, width),
        normal.numpy().reshape(height, width, 3),
        ids.numpy().reshape(height, width),
    )
