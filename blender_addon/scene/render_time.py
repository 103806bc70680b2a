"""Final renders at each neural object's render resolution: F12, animation renders, ``blender -b -f N`` / ``-a``.

When a render job starts (``render_init``: once per still or per animation), every mesh of a neural object
the render can see whose render resolution is above its viewport resolution gets the finer surface, in
place (:func:`.mesh_data.replace_geometry`: materials and modifiers stay, linked duplicates share one
extraction). When the job ends (``render_complete`` / ``render_cancel``) the proxies are put back. The
extracted surfaces are kept by shape, resolution and method for the next render of this session.

Cycles and EEVEE then render the detailed surface with the scene's materials and lights. The cost is
printed once per render job. Without a service the render goes on with the proxies, and a line says why.
In the interface, a render job runs on its own thread: keep Render > Lock Interface on (it is set for
you when an extraction happens) so the viewport does not draw the meshes while they change.
"""

from __future__ import annotations

import time
from collections import OrderedDict

import bpy
import numpy as np
from bpy.app.handlers import persistent

from ..client.errors import ServiceError
from ..settings import connection_settings
from .mesh_data import mesh_arrays, replace_geometry
from .neural_objects import ensure_on_service, is_neural, remember_ids, stored_shape
from .shape_store import shape_digest

CACHE_SIZE = 8  # extracted surfaces kept (a 256^3 surface: about 10 MB)
METHOD = "sparse"

MeshArrays = tuple[np.ndarray, np.ndarray, np.ndarray | None]
_cache: OrderedDict[tuple[str, int, str], MeshArrays] = OrderedDict()
_proxies: dict[str, MeshArrays] = {}  # mesh name -> its viewport proxy, while a render has it swapped


def render_targets(scene: bpy.types.Scene) -> dict[str, tuple[bpy.types.Object, int]]:
    """Mesh name -> (a neural object using it, the largest render resolution among its users) for the
    neural objects a render of ``scene`` sees, directly or through collection instances, whose render
    resolution is above their viewport resolution (local meshes only: a linked library's are read-only)."""
    objects = list(scene.objects)
    for obj in scene.objects:
        if obj.instance_type == "COLLECTION" and obj.instance_collection is not None:
            objects.extend(obj.instance_collection.all_objects)
    targets: dict[str, tuple[bpy.types.Object, int]] = {}
    for obj in objects:
        if not is_neural(obj) or obj.hide_render or obj.data.library is not None:
            continue
        settings = obj.neural_shapes
        if settings.render_resolution <= settings.viewport_resolution:
            continue
        previous = targets.get(obj.data.name, (obj, 0))[1]
        targets[obj.data.name] = (obj, max(previous, settings.render_resolution))
    return targets


@persistent
def use_render_resolution(scene: bpy.types.Scene, *_) -> None:
    """``render_init``: swap in the render-resolution surfaces (not for the Neural Shapes engine: it traces
    the shapes themselves)."""
    if scene.render.engine == "NEURAL_SHAPES":
        return
    targets = render_targets(scene)
    if not targets:
        return
    started, cached = time.perf_counter(), 0
    try:
        surfaces, cached = _surfaces(targets)
    except (ServiceError, OSError, ValueError) as error:
        print(f"neural shapes: rendering the proxies, the render-resolution surfaces are unavailable: {error}")
        return
    if not bpy.app.background:
        scene.render.use_lock_interface = True
    for name, arrays in surfaces.items():
        mesh = bpy.data.meshes[name]
        _proxies.setdefault(name, mesh_arrays(mesh))
        replace_geometry(mesh, *arrays)
    resolutions = sorted({resolution for _, resolution in targets.values()})
    print(
        f"neural shapes: {len(surfaces)} surface(s) at {', '.join(f'{r}^3' for r in resolutions)} for the render "
        f"in {time.perf_counter() - started:.2f} s ({cached} from the cache)"
    )


@persistent
def restore_proxies(*_) -> None:
    """``render_complete`` / ``render_cancel``: put the viewport proxies back."""
    for name, arrays in list(_proxies.items()):
        mesh = bpy.data.meshes.get(name)
        if mesh is not None:
            replace_geometry(mesh, *arrays)
    _proxies.clear()


def _surfaces(targets: dict[str, tuple[bpy.types.Object, int]]) -> tuple[dict[str, MeshArrays], int]:
    """Mesh name -> its render surface (source frame), from the cache or the service; and how many were cached."""
    from ..background import workers  # the client factory; imported late: handlers load with the add-on

    surfaces, cached, client, ids = {}, 0, None, []
    for name, (obj, resolution) in targets.items():
        key = (shape_digest(obj), resolution, METHOD)
        if key in _cache:
            _cache.move_to_end(key)
            surfaces[name], cached = _cache[key], cached + 1
            continue
        stored = stored_shape(obj)
        if client is None:
            client = workers.client(connection_settings(bpy.context))
        shape_id = ensure_on_service(client, stored)
        ids.append((stored, shape_id))
        arrays = client.mesh(shape_id, resolution=resolution, method=METHOD).numpy()
        _cache[key] = surfaces[name] = arrays
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    remember_ids(ids)
    return surfaces, cached


HANDLERS = (
    ("render_init", use_render_resolution),
    ("render_complete", restore_proxies),
    ("render_cancel", restore_proxies),
)


def attach() -> None:
    for event, handler in HANDLERS:
        getattr(bpy.app.handlers, event).append(handler)


def detach() -> None:
    restore_proxies()
    for event, handler in HANDLERS:
        handlers = getattr(bpy.app.handlers, event)
        if handler in handlers:
            handlers.remove(handler)
