"""Operators: read properties, call the bpy-free client and the conversion workflow, report errors.

Convert runs as: ``execute`` reads the evaluated meshes (main thread, fast), a worker thread uploads
them and starts the job (HTTP only), and a ``bpy.app.timers`` callback polls every 0.5 s, updating the
progress shown in the panel and the status bar, and creates the neural objects when the job is done.
Only the main thread touches bpy.
"""

from __future__ import annotations

import uuid
from concurrent.futures import Future, ThreadPoolExecutor

import bpy

from .client.client import ServiceError
from .connection import check_connection, default_data_dir, make_client, start_service
from .conversion import POLL_SECONDS, Conversion, collect_meshes, poll_conversion, submit
from .neural_objects import is_neural, re_extract, render_preview
from .settings import connection_settings, preferences

_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="neural-shapes")  # never touches bpy
_running: dict[str, Conversion] = {}  # the conversion in flight (one at a time), by a local key
_service: list = []  # the service process this Blender started, if any
_submissions: dict[str, Future] = {}  # uploads + job start running on a worker thread, by the same key


def _tag_redraw() -> None:
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "STATUSBAR"):
                area.tag_redraw()


def _poll_timer(key: str, settings) -> float | None:
    """One timer tick: wait for the submission, then poll the job; the last tick builds the neural objects."""
    conversion = _running.get(key)
    if conversion is None:
        return None
    wm = bpy.context.window_manager
    finished = False
    try:
        if not conversion.job_id:
            future = _submissions[key]
            if not future.done():
                return POLL_SECONDS
            conversion.job_id = wm.neural_shapes_job = future.result()  # re-raises the worker's ServiceError
            del _submissions[key]
        finished = poll_conversion(make_client(settings), conversion, bpy.context.scene.collection)
    except ServiceError as error:
        conversion.state, conversion.error, finished = "failed", error.detail, True
    wm.neural_shapes_progress = conversion.progress
    wm.neural_shapes_stage = conversion.stage if not finished else (
        f"converted {len(conversion.created)} object(s)" if conversion.state == "succeeded" else f"{conversion.state}: {conversion.error}"
    )
    if finished:
        _running.pop(key, None)
        _submissions.pop(key, None)
        wm.progress_end()
    else:
        wm.progress_update(int(conversion.progress * 100))
    _tag_redraw()
    return None if finished else POLL_SECONDS


class NEURAL_OT_convert_selected(bpy.types.Operator):
    """Fit a neural shape to every selected mesh object (modifiers applied) in one batched job"""

    bl_idname = "neural.convert_selected"
    bl_label = "Convert Selected to Neural"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not _running

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = connection_settings(context)
        try:
            client = make_client(settings)
            meshes = collect_meshes(list(context.selected_objects), context.evaluated_depsgraph_get())
        except ServiceError as error:
            self.report({"ERROR"}, error.detail)
            return {"CANCELLED"}
        key = uuid.uuid4().hex
        _running[key] = Conversion(sources=[(m.name, m.matrix_world) for m in meshes], resolution=context.scene.neural_shapes_resolution)
        # Uploads can take a while for big meshes: a worker thread does the HTTP, the timer picks it up.
        fit = {"target_surface_error": context.scene.neural_shapes_target_error}
        _submissions[key] = _pool.submit(submit, client, meshes, fit)
        wm = context.window_manager
        wm.neural_shapes_progress, wm.neural_shapes_stage, wm.neural_shapes_job, wm.neural_shapes_key = 0.0, "uploading", "", key
        wm.progress_begin(0, 100)
        bpy.app.timers.register(lambda: _poll_timer(key, settings), first_interval=POLL_SECONDS)
        self.report({"INFO"}, f"converting {len(meshes)} object(s)")
        return {"FINISHED"}


class NEURAL_OT_cancel(bpy.types.Operator):
    """Cancel the running conversion"""

    bl_idname = "neural.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return bool(_running)

    def execute(self, context: bpy.types.Context) -> set[str]:
        key = context.window_manager.neural_shapes_key
        conversion = _running.get(key)
        try:
            job_id = conversion.job_id if conversion and conversion.job_id else _submissions[key].result(timeout=60)
            make_client(connection_settings(context)).cancel(job_id)
        except KeyError:
            return {"CANCELLED"}  # nothing in flight any more
        except ServiceError as error:
            self.report({"ERROR"}, error.detail)
            return {"CANCELLED"}
        return {"FINISHED"}


class NEURAL_OT_check_connection(bpy.types.Operator):
    """Ask the neural-shapes service for its version and check the token"""

    bl_idname = "neural.check_connection"
    bl_label = "Check Connection"

    def execute(self, context: bpy.types.Context) -> set[str]:
        status = check_connection(connection_settings(context))
        context.window_manager.neural_shapes_status = status
        if status.startswith("connected"):
            self.report({"INFO"}, status)
            return {"FINISHED"}
        self.report({"ERROR"}, status)
        return {"CANCELLED"}


class NEURAL_OT_re_extract(bpy.types.Operator):
    """Mesh the selected neural objects again at the scene's proxy resolution"""

    bl_idname = "neural.re_extract"
    bl_label = "Re-extract"

    method: bpy.props.EnumProperty(
        name="Method", items=[("sparse", "Sparse", "Lipschitz octree, cost follows the surface"), ("dense", "Dense", "Every grid node")]
    )

    def execute(self, context: bpy.types.Context) -> set[str]:
        targets = [o for o in context.selected_objects if is_neural(o)]
        if not targets:
            self.report({"ERROR"}, "select at least one neural object")
            return {"CANCELLED"}
        try:
            client = make_client(connection_settings(context))
            for obj in targets:
                re_extract(client, obj, context.scene.neural_shapes_resolution, self.method)
        except ServiceError as error:
            self.report({"ERROR"}, error.detail)
            return {"CANCELLED"}
        return {"FINISHED"}


class NEURAL_OT_render_preview(bpy.types.Operator):
    """Sphere-trace all visible neural objects from the active camera into the 'Neural Preview' image"""

    bl_idname = "neural.render_preview"
    bl_label = "Render Neural Preview"

    def execute(self, context: bpy.types.Context) -> set[str]:
        objects = [o for o in context.scene.objects if is_neural(o) and o.visible_get()]
        try:
            image = render_preview(make_client(connection_settings(context)), context.scene, objects)
        except ServiceError as error:
            self.report({"ERROR"}, error.detail)
            return {"CANCELLED"}
        for area in context.screen.areas if context.screen else ():
            if area.type == "IMAGE_EDITOR":
                area.spaces.active.image = image
                break
        self.report({"INFO"}, f"rendered {len(objects)} neural object(s) into '{image.name}'")
        return {"FINISHED"}


class NEURAL_OT_start_service(bpy.types.Operator):
    """Start neural-shapes serve as a child of Blender (when none answers on the data folder)"""

    bl_idname = "neural.start_service"
    bl_label = "Start Service"

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = connection_settings(context)
        if check_connection(settings).startswith("connected"):
            self.report({"INFO"}, "a service is already running")
            return {"FINISHED"}
        try:
            process, url = start_service(preferences(context).backend_command.strip(), settings.data_dir or default_data_dir())
        except ServiceError as error:
            self.report({"ERROR"}, error.detail)
            return {"CANCELLED"}
        _service.append(process)
        context.window_manager.neural_shapes_status = check_connection(settings)
        self.report({"INFO"}, f"service started at {url}")
        return {"FINISHED"}


class NEURAL_OT_stop_service(bpy.types.Operator):
    """Stop the service this Blender started"""

    bl_idname = "neural.stop_service"
    bl_label = "Stop Service"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return bool(_service)

    def execute(self, context: bpy.types.Context) -> set[str]:
        while _service:
            process = _service.pop()
            process.terminate()
            process.wait(30)
        context.window_manager.neural_shapes_status = "service stopped"
        return {"FINISHED"}
