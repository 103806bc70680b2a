# Ray casting of triangle meshes with the sphere tracer's cameras and light, so a picture can show a
# neural shape next to the mesh it was fitted to, drawn alike: one ray per pixel against Warp's BVH
# (``wp.mesh_query_ray``), Lambert + ambient shading of the face hit (no occlusion or shadows). Both
# sides of a face are lit: a source mesh's winding may be inconsistent, and that is not what the
# picture is for.
#
# Outputs as the tracer's: linear RGBA (alpha 0 on misses) and depth along the viewing axis (inf on misses).

import numpy as np
import warp as wp

from kernels.device import default_device
from kernels.sphere_trace import DeviceCamera, RayCamera, TraceSettings, camera_ray, device_camera


@wp.kernel(enable_backward=False)
def _cast(
    mesh: wp.uint64,
    camera: DeviceCamera,
    light: wp.vec3,
    ambient: float,
    colour: wp.vec3,
    out_rgba: wp.array(dtype=wp.vec4),
    out_depth: wp.array(dtype=float),
):
    pixel = wp.tid()
    origin, direction, axial = camera_ray(camera, pixel)
    hit = wp.mesh_query_ray(mesh, origin, direction, camera.clip_end / axial)
    if hit.result and hit.t * axial >= camera.clip_start:
        n = wp.where(wp.dot(hit.normal, direction) > 0.0, -hit.normal, hit.normal)
        c = colour * (ambient + (1.0 - ambient) * wp.max(wp.dot(n, light), 0.0))
        out_rgba[pixel] = wp.vec4(c[0], c[1], c[2], 1.0)
        out_depth[pixel] = hit.t * axial
    else:
        out_rgba[pixel] = wp.vec4()
        out_depth[pixel] = wp.inf


def cast(
    vertices: np.ndarray,
    faces: np.ndarray,
    camera: RayCamera,
    colour: tuple[float, float, float] = (0.8, 0.8, 0.8),
    settings: TraceSettings = TraceSettings(),
    device: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render a triangle mesh, vertices (n, 3) and faces (f, 3) in world units, seen by ``camera``.

    Returns rgba (h, w, 4) float32 linear (alpha 0 on misses) and depth (h, w) float32 along the viewing
    axis (inf on misses); light and ambient from ``settings``, as :func:`kernels.sphere_trace.trace` uses them.
    """
    width, height = int(camera.width), int(camera.height)
    if width * height == 0 or len(faces) == 0:
        return np.zeros((height, width, 4), np.float32), np.full((height, width), np.inf, np.float32)
    device = default_device(device)
    mesh = wp.Mesh(
        points=wp.array(np.asarray(vertices, dtype=np.float32), dtype=wp.vec3, device=device),
        indices=wp.array(np.asarray(faces, dtype=np.int32).reshape(-1), dtype=int, device=device),
    )
    light = np.asarray(settings.light_direction, dtype=np.float64)
    rgba = wp.empty(width * height, dtype=wp.vec4, device=device)
    depth = wp.empty(width * height, dtype=float, device=device)
    wp.launch(
        _cast,
        dim=width * height,
        inputs=[mesh.id, device_camera(camera), wp.vec3(*(light / np.linalg.norm(light))), settings.ambient, colour],
        outputs=[rgba, depth],
        device=device,
    )
    return rgba.numpy().reshape(height, width, 4), depth.numpy().reshape(height, width)
