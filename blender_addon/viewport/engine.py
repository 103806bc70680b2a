"""The Neural Shapes render engine: Viewport Shading > Rendered sphere-traces the visible neural objects
(their world matrices and CSG settings) from the 3D viewport's own view, progressively; F12 traces them
from the scene camera.

Viewport (``view_draw``, main thread): the view (region matrices and size) and the neural objects are read
into plain data; :class:`.progressive.Progressive` decides which frame to ask (coarse at 1/4 resolution
right after a change, full resolution once the view is still) and one worker thread traces it through the
service (``POST /v1/render``, ``npz``: colour and depth), never touching bpy. A module timer redraws the
rendered viewports when a frame arrives or the view has been still long enough. Each draw clears to the
world colour, draws the ordinary (non-neural) geometry flat-shaded with depth, then the latest traced
frame as a textured quad whose fragments write the tracer's depth converted to the viewport's window depth
(:func:`.camera.window_depth`): traced shapes and ordinary geometry hide each other where they should.
Blender's overlays (grid, outlines, gizmos) are drawn over the result by Blender itself, against the
depth of the objects' own meshes (for a neural object: its proxy mesh).

Colour: the traced linear RGB is encoded as sRGB (as the PNG preview), the scene's view transform is not
applied. The HTTP runs on :func:`..background.workers.client` clients, so disabling the add-on breaks off a
frame in flight.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import bpy
import gpu
import numpy as np
from gpu_extras.batch import batch_for_shader

from ..background import workers
from ..client.client import Client
from ..client.connection import ConnectionSettings
from ..client.errors import ServiceError
from ..errors import LocalError, one_line
from ..scene.neural_objects import StoredShape, camera_spec, ensure_on_service, is_neural, stored_shape
from ..settings import connection_settings
from .camera import ViewFrame, frame_key, view_frame, window_depth
from .progressive import COARSE, FULL, Progressive

ENGINE_ID = "NEURAL_SHAPES"
COARSE_SCALE = 0.25  # a coarse frame's resolution, of the region's
POLL_SECONDS = 0.03  # how often the timer looks for finished frames
FRAME_TIMEOUT = 60.0  # seconds for one frame's answer
TRACE_SETTINGS = {COARSE: {"ambient_occlusion": False}, FULL: None}  # None: the service's defaults
LIGHT = np.array([0.35, -0.45, 0.82]) / np.linalg.norm([0.35, -0.45, 0.82])  # the tracer's default light
AMBIENT = 0.2
BASE_COLOUR = 0.8  # the tracer's default grey, times an object's colour
TIMES_KEPT = 200

# Seconds each traced frame took on the worker (request, trace, answer, decoding): for the README's table.
frame_times: list[dict] = []


# --- main thread: reading the scene ---------------------------------------------------------------


@dataclass(frozen=True)
class NeuralScene:
    """The visible neural objects as the render API takes them (without the shape ids) and their shapes."""

    shapes: tuple[StoredShape, ...]
    objects: tuple[dict, ...]
    key: str  # changes whenever what is traced changes


def neural_scene(depsgraph: bpy.types.Depsgraph) -> NeuralScene:
    """The neural objects among the depsgraph's visible object instances (main thread or a render thread)."""
    shapes, objects = [], []
    for instance in depsgraph.object_instances:
        original = instance.object.original
        if not is_neural(original):
            continue
        settings = original.neural_shapes
        shapes.append(stored_shape(original))
        objects.append(
            {
                "matrix_world": [[float(x) for x in row] for row in instance.matrix_world],
                "operation": settings.operation,
                "smooth_radius": float(settings.smooth_radius),
                "colour": [BASE_COLOUR * float(c) for c in original.color[:3]],
            }
        )
    key = json.dumps([[s.object_name, s.shape_id, len(s.h5)] for s in shapes] + objects)
    return NeuralScene(tuple(shapes), tuple(objects), key)


# --- worker thread: tracing a frame (no bpy) -------------------------------------------------------


@dataclass(frozen=True)
class FrameRequest:
    level: str
    frame: ViewFrame
    scene: NeuralScene
    settings: ConnectionSettings


@dataclass(frozen=True)
class TracedFrame:
    """rgba (h, w, 4) float32 linear and depth (h, w) float32 window depth, both bottom row first."""

    level: str
    frame: ViewFrame
    rgba: np.ndarray
    depth: np.ndarray
    seconds: float


_clients: dict[ConnectionSettings, Client] = {}
_shape_ids: dict[tuple, str] = {}  # (service URL, object, stored id, h5 digest) -> id on that service


def _client(settings: ConnectionSettings) -> Client:
    if settings not in _clients:
        _clients[settings] = workers.client(settings, FRAME_TIMEOUT)
    return _clients[settings]


def _service_ids(client: Client, shapes: tuple[StoredShape, ...]) -> list[str]:
    """The shapes' ids on the client's service, imported once per service (the stored bytes travel with the .blend)."""
    ids = []
    for stored in shapes:
        cache_key = (client.base_url, stored.object_name, stored.shape_id, hashlib.sha1(stored.h5).hexdigest())
        if cache_key not in _shape_ids:
            _shape_ids[cache_key] = ensure_on_service(client, stored)
        ids.append(_shape_ids[cache_key])
    return ids


def trace_frame(request: FrameRequest) -> TracedFrame:
    """Trace one viewport frame through the service (a worker: HTTP and numpy only)."""
    started = time.perf_counter()
    if not request.scene.shapes:
        frame = request.frame
        empty = np.zeros((frame.height, frame.width, 4), np.float32)
        return TracedFrame(request.level, frame, empty, np.ones(empty.shape[:2], np.float32), 0.0)
    for attempt in (0, 1):
        client = _client(request.settings)
        try:
            ids = _service_ids(client, request.scene.shapes)
            objects = [{"shape": i, **spec} for i, spec in zip(ids, request.scene.objects)]
            rendered = client.render(
                objects,
                width=request.frame.width,
                height=request.frame.height,
                camera=request.frame.camera,
                settings=TRACE_SETTINGS[request.level],
                format="npz",
            )
            break
        except ServiceError as error:
            # a service restarted on another port, or a library that lost a shape: find both again, once
            _clients.pop(request.settings, None)
            _shape_ids.clear()
            if attempt or error.status not in (0, 400, 404):
                raise
    with np.load(io.BytesIO(rendered.data), allow_pickle=False) as arrays:
        rgba = np.ascontiguousarray(arrays["rgba"][::-1], dtype=np.float32)
        depth = window_depth(arrays["depth"][::-1], request.frame)
    seconds = time.perf_counter() - started
    frame_times.append(
        {"level": request.level, "width": request.frame.width, "height": request.frame.height, "seconds": seconds}
    )
    del frame_times[:-TIMES_KEPT]
    return TracedFrame(request.level, request.frame, rgba, np.ascontiguousarray(depth), seconds)


_pool: ThreadPoolExecutor | None = None


def _submit(request: FrameRequest) -> Future:
    if _pool is None:
        raise LocalError("the add-on is not running (enable it again)")
    future = _pool.submit(trace_frame, request)
    _in_flight.add(future)
    _start_timer()
    return future


# --- main thread: waking the rendered viewports ----------------------------------------------------

_in_flight: set[Future] = set()
_wake_times: list[float] = []


def _wake(at: float) -> None:
    """Redraw the rendered viewports at ``at`` (monotonic seconds) and whenever a frame in flight ends."""
    _wake_times.append(at)
    _start_timer()


def _start_timer() -> None:
    if not bpy.app.timers.is_registered(_poll):
        bpy.app.timers.register(_poll, first_interval=POLL_SECONDS, persistent=True)


def _poll() -> float | None:
    now = time.monotonic()
    finished = {f for f in _in_flight if f.done()}
    due = [t for t in _wake_times if t <= now]
    _in_flight.difference_update(finished)
    _wake_times[:] = [t for t in _wake_times if t > now]
    if finished or due:
        _redraw_rendered_viewports()
    return POLL_SECONDS if _in_flight or _wake_times else None


def _redraw_rendered_viewports() -> None:
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D" and area.spaces.active.shading.type == "RENDERED":
                area.tag_redraw()


# --- main thread: drawing --------------------------------------------------------------------------


def _srgb(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1 / 2.4) - 0.055)


def _builtin_shader(*names: str) -> gpu.types.GPUShader:
    for name in names:  # the names changed in Blender 4.0 ("3D_" went)
        try:
            return gpu.shader.from_builtin(name)
        except (ValueError, TypeError):
            continue
    raise LocalError(f"no builtin shader among {names}")


_image_shader: gpu.types.GPUShader | None = None


def image_shader() -> gpu.types.GPUShader:
    """Draws a traced frame: sRGB colour, and the frame's depth written as the fragment's depth."""
    global _image_shader
    if _image_shader is None:
        info = gpu.types.GPUShaderCreateInfo()
        between = gpu.types.GPUStageInterfaceInfo("neural_shapes_frame")
        between.smooth("VEC2", "uv")
        info.vertex_in(0, "VEC2", "pos")
        info.vertex_in(1, "VEC2", "texco")
        info.vertex_out(between)
        info.sampler(0, "FLOAT_2D", "image")
        info.sampler(1, "FLOAT_2D", "depth_image")
        info.fragment_out(0, "VEC4", "fragColor")
        if hasattr(info, "depth_write"):  # declared where the backend needs it (Vulkan, Metal)
            info.depth_write("ANY")
        info.vertex_source("void main() { uv = texco; gl_Position = vec4(pos, 0.0, 1.0); }")
        info.fragment_source(
            "float srgb(float c) { c = clamp(c, 0.0, 1.0);"
            " return c <= 0.0031308 ? 12.92 * c : 1.055 * pow(c, 1.0 / 2.4) - 0.055; }\n"
            "void main() {\n"
            "  vec4 colour = texture(image, uv);\n"
            "  if (colour.a < 0.5) { discard; }\n"
            "  gl_FragDepth = texture(depth_image, uv).r;\n"
            "  fragColor = vec4(srgb(colour.r / colour.a), srgb(colour.g / colour.a), srgb(colour.b / colour.a), 1.0);\n"
            "}\n"
        )
        _image_shader = gpu.shader.create_from_info(info)
    return _image_shader


def _texture(values: np.ndarray, texture_format: str) -> gpu.types.GPUTexture:
    height, width = values.shape[:2]
    flat = np.ascontiguousarray(values, dtype=np.float32).ravel()
    return gpu.types.GPUTexture((width, height), format=texture_format, data=gpu.types.Buffer("FLOAT", flat.size, flat))


class FrameDrawing:
    """A traced frame's textures and quad (made once per frame, on the main thread with a GPU context)."""

    def __init__(self, frame: TracedFrame):
        self.frame = frame
        self.colour = _texture(frame.rgba, "RGBA32F")
        self.depth = _texture(frame.depth, "R32F")
        left, bottom, right, top = frame.frame.ndc_rect
        self.batch = batch_for_shader(
            image_shader(),
            "TRIS",
            {
                "pos": ((left, bottom), (right, bottom), (right, top), (left, top)),
                "texco": ((0, 0), (1, 0), (1, 1), (0, 1)),
            },
            indices=((0, 1, 2), (0, 2, 3)),
        )

    def draw(self) -> None:
        shader = image_shader()
        shader.bind()
        shader.uniform_sampler("image", self.colour)
        shader.uniform_sampler("depth_image", self.depth)
        self.batch.draw(shader)


class MeshDrawing:
    """The ordinary geometry (visible mesh-like objects that are not neural), flat-shaded in world space as
    the tracer shades (its light and ambient), rebuilt when the depsgraph changes."""

    KINDS = {"MESH", "CURVE", "SURFACE", "META", "FONT"}

    def __init__(self) -> None:
        self.batches: list[gpu.types.GPUBatch] = []
        self.stale = True

    def rebuild(self, depsgraph: bpy.types.Depsgraph) -> None:
        shader = _builtin_shader("3D_SMOOTH_COLOR", "SMOOTH_COLOR")
        self.batches = []
        for instance in depsgraph.object_instances:
            obj = instance.object
            if obj.type not in self.KINDS or is_neural(obj.original):
                continue
            triangles = _world_triangles(obj, np.array(instance.matrix_world, dtype=np.float64))
            if triangles is None:
                continue
            positions, normals = triangles
            base = BASE_COLOUR * np.asarray(obj.color[:3], dtype=np.float64)
            light = AMBIENT + (1 - AMBIENT) * np.clip(normals @ LIGHT, 0.0, None)
            colours = np.ones((len(normals), 4), np.float32)
            colours[:, :3] = _srgb(light[:, None] * base)
            self.batches.append(
                batch_for_shader(
                    shader,
                    "TRIS",
                    {"pos": positions.reshape(-1, 3), "color": np.repeat(colours, 3, axis=0)},
                )
            )
        self.stale = False

    def draw(self, view_matrix, window_matrix) -> None:
        if not self.batches:
            return
        shader = _builtin_shader("3D_SMOOTH_COLOR", "SMOOTH_COLOR")
        with gpu.matrix.push_pop(), gpu.matrix.push_pop_projection():
            gpu.matrix.load_matrix(view_matrix)
            gpu.matrix.load_projection_matrix(window_matrix)
            for batch in self.batches:
                batch.draw(shader)


def _world_triangles(obj: bpy.types.Object, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(t, 3, 3) float32 world corners and (t, 3) unit world normals of an evaluated object's triangles."""
    try:
        mesh = obj.to_mesh()
    except RuntimeError:
        return None
    try:
        if mesh is None or not mesh.polygons:
            return None
        mesh.calc_loop_triangles()
        count = len(mesh.loop_triangles)
        corners = np.empty(count * 3, np.int32)
        mesh.loop_triangles.foreach_get("vertices", corners)
        co = np.empty(len(mesh.vertices) * 3, np.float32)
        mesh.vertices.foreach_get("co", co)
    finally:
        obj.to_mesh_clear()
    local = co.reshape(-1, 3)[corners].reshape(-1, 3, 3).astype(np.float64)
    world = local @ matrix[:3, :3].T + matrix[:3, 3]
    normals = np.cross(world[:, 1] - world[:, 0], world[:, 2] - world[:, 0])
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return world.astype(np.float32), normals / np.where(length > 0, length, 1.0)


def _matrix_rows(matrix) -> list[list[float]]:
    return [[float(x) for x in row] for row in matrix]


def _clear(colour: tuple[float, float, float]) -> None:
    framebuffer = gpu.state.active_framebuffer_get()
    framebuffer.clear(color=(*colour, 1.0), depth=1.0)


class Viewport:
    """One rendered viewport's state: the progressive frames and what is drawn."""

    def __init__(self) -> None:
        self.progressive = Progressive()
        self.meshes = MeshDrawing()
        self.drawing: FrameDrawing | None = None
        self.text = ""

    def draw(self, engine: bpy.types.RenderEngine, context: bpy.types.Context, depsgraph: bpy.types.Depsgraph) -> None:
        region, view = context.region, context.region_data
        width, height = region.width, region.height
        view_matrix, window_matrix = _matrix_rows(view.view_matrix), _matrix_rows(view.window_matrix)
        scene = neural_scene(depsgraph)
        key = (scene.key, frame_key(view_matrix, window_matrix, width, height))
        settings = connection_settings(context)

        def submit(level: str) -> Future:
            scale = COARSE_SCALE if level == COARSE else 1.0
            frame = view_frame(view_matrix, window_matrix, width, height, scale=scale)
            return _submit(FrameRequest(level, frame, scene, settings))

        wake = self.progressive.step(key, time.monotonic(), submit)
        if wake is not None:
            _wake(wake)
        shown = self.progressive.shown
        if shown is not None and (self.drawing is None or self.drawing.frame is not shown):
            self.drawing = FrameDrawing(shown)
        if self.meshes.stale:
            self.meshes.rebuild(depsgraph)

        world = context.scene.world
        _clear(tuple(float(c) for c in _srgb(np.array(world.color if world is not None else (0.05, 0.05, 0.05)))))
        gpu.state.depth_test_set("LESS_EQUAL")
        gpu.state.depth_mask_set(True)
        self.meshes.draw(view.view_matrix, view.window_matrix)
        if self.drawing is not None and scene.shapes:
            self.drawing.draw()
        gpu.state.depth_mask_set(False)
        gpu.state.depth_test_set("NONE")
        self._status(engine, scene)

    def _status(self, engine: bpy.types.RenderEngine, scene: NeuralScene) -> None:
        progressive = self.progressive
        if progressive.error:
            text = f"Neural Shapes: {progressive.error}"
        elif not scene.shapes:
            text = "Neural Shapes: no visible neural objects"
        elif progressive.current:
            frame = progressive.shown
            text = f"Neural Shapes: {frame.level} {frame.frame.width} x {frame.frame.height}, {frame.seconds:.2f} s"
            if progressive.busy:
                text += ", refining ..."
        else:
            text = "Neural Shapes: tracing ..."
        if text != self.text:
            self.text = text
            engine.update_stats("", text)


def _viewport(engine: bpy.types.RenderEngine) -> Viewport:
    try:
        return engine.neural_viewport
    except AttributeError:
        engine.neural_viewport = Viewport()
        return engine.neural_viewport


class NeuralShapesRenderEngine(bpy.types.RenderEngine):
    """Sphere-traces the neural objects: the 3D viewport's Rendered shading and F12 (the scene camera)."""

    bl_idname = ENGINE_ID
    bl_label = "Neural Shapes"
    bl_use_preview = False
    bl_use_eevee_viewport = True  # Material Preview stays EEVEE's

    def view_update(self, context: bpy.types.Context, depsgraph: bpy.types.Depsgraph) -> None:
        _viewport(self).meshes.stale = True  # the neural objects are read at each draw

    def view_draw(self, context: bpy.types.Context, depsgraph: bpy.types.Depsgraph) -> None:
        _viewport(self).draw(self, context, depsgraph)

    def render(self, depsgraph: bpy.types.Depsgraph) -> None:
        """F12: the neural objects from the scene camera at the scene's resolution (waits for the service:
        a render job runs off the UI thread)."""
        scene = depsgraph.scene
        scale = scene.render.resolution_percentage / 100
        width = max(1, int(scene.render.resolution_x * scale))
        height = max(1, int(scene.render.resolution_y * scale))
        try:
            pixels = render_scene(depsgraph, width, height, connection_settings(bpy.context))
        except (LocalError, ServiceError) as error:
            self.report({"ERROR"}, f"Neural Shapes: {one_line(error)}")
            return
        result = self.begin_result(0, 0, width, height)
        result.layers[0].passes["Combined"].rect = pixels.reshape(-1, 4)
        self.end_result(result)


def render_scene(depsgraph: bpy.types.Depsgraph, width: int, height: int, settings: ConnectionSettings) -> np.ndarray:
    """The visible neural objects from the scene camera: (height, width, 4) float32 linear RGBA, bottom row first."""
    scene = neural_scene(depsgraph)
    if not scene.shapes:
        raise LocalError("no visible neural objects to render")
    camera = camera_spec(depsgraph.scene)
    client = workers.client(settings)
    ids = [ensure_on_service(client, stored) for stored in scene.shapes]
    objects = [{"shape": i, **spec} for i, spec in zip(ids, scene.objects)]
    rendered = client.render(objects, width=width, height=height, camera=camera, format="rgba")
    pixels = np.frombuffer(rendered.data, dtype="<f4").reshape(rendered.height, rendered.width, 4)
    return np.ascontiguousarray(pixels[::-1])


def register() -> None:
    global _pool
    _clients.clear()
    _shape_ids.clear()
    _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="neural-shapes-viewport")
    bpy.utils.register_class(NeuralShapesRenderEngine)


def unregister() -> None:
    """After :func:`..background.workers.interrupt` (a frame in flight is broken off): end the worker and the timer."""
    global _pool
    if bpy.app.timers.is_registered(_poll):
        bpy.app.timers.unregister(_poll)
    _in_flight.clear()
    _wake_times.clear()
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
        _pool = None
    _clients.clear()
    _shape_ids.clear()
    bpy.utils.unregister_class(NeuralShapesRenderEngine)
