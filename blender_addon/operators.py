"""Operators: read properties and bpy data on the main thread, hand the HTTP to :mod:`.tasks` (or
:mod:`.jobs` for service jobs), report what is wrong before anything starts.

Every operator returns at once: the service's answer is applied by a timer, its outcome shown on the
panel's lines (connection status, job stage, last message). Only the main thread touches bpy.
"""

from __future__ import annotations

import subprocess

import bpy

from . import jobs, tasks
from .client.errors import ServiceError
from .connection import ConnectionSettings, check_connection, start_service, stop_service
from .conversion import collect_meshes, conversion_job, submit
from .neural_objects import (
    Extraction,
    apply_re_extract,
    is_neural,
    preview_request,
    re_extract_remote,
    remember_ids,
    render_remote,
    show_preview,
    stored_shape,
)
from .settings import connection_settings, preferences

_service: list[subprocess.Popen] = []  # the service processes this Blender started (a worker appends, the main thread stops)


class NEURAL_OT_convert_selected(bpy.types.Operator):
    """Fit a neural shape to every selected mesh object (modifiers applied) in one batched job"""

    bl_idname = "neural.convert_selected"
    bl_label = "Convert Selected to Neural"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not jobs.busy()

    def execute(self, context: bpy.types.Context) -> set[str]:
        fit = {"target_surface_error": context.scene.neural_shapes_target_error}
        try:
            meshes = collect_meshes(list(context.selected_objects), context.evaluated_depsgraph_get())
            jobs.start(connection_settings(context), conversion_job(meshes, context.scene.neural_shapes_resolution),
                       lambda client: submit(client, meshes, fit))
        except ServiceError as error:
            self.report({"ERROR"}, error.detail)
            return {"CANCELLED"}
        self.report({"INFO"}, f"converting {len(meshes)} object(s)")
        return {"FINISHED"}


class NEURAL_OT_cancel(bpy.types.Operator):
    """Cancel the running job"""

    bl_idname = "neural.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return jobs.busy()

    def execute(self, context: bpy.types.Context) -> set[str]:
        jobs.cancel()
        context.window_manager.neural_shapes_stage = "cancelling"
        return {"FINISHED"}


class NEURAL_OT_check_connection(bpy.types.Operator):
    """Ask the neural-shapes service for its version and check the token"""

    bl_idname = "neural.check_connection"
    bl_label = "Check Connection"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not tasks.busy("connection")

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = connection_settings(context)
        tasks.start("connection", lambda: check_connection(settings, tasks.interrupter()), str,
                    title="Check Connection", pending="checking ...", line="neural_shapes_status")
        return {"FINISHED"}


class NEURAL_OT_re_extract(bpy.types.Operator):
    """Mesh the selected neural objects again at the scene's proxy resolution"""

    bl_idname = "neural.re_extract"
    bl_label = "Re-extract"

    method: bpy.props.EnumProperty(
        name="Method", items=[("sparse", "Sparse", "Lipschitz octree, cost follows the surface"), ("dense", "Dense", "Every grid node")]
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not tasks.busy("re_extract")

    def execute(self, context: bpy.types.Context) -> set[str]:
        targets = [o for o in context.selected_objects if is_neural(o)]
        if not targets:
            self.report({"ERROR"}, "select at least one neural object")
            return {"CANCELLED"}
        settings = connection_settings(context)
        request = Extraction([stored_shape(o) for o in targets], context.scene.neural_shapes_resolution, self.method)
        tasks.start("re_extract", lambda: re_extract_remote(tasks.client(settings), request), lambda meshes: apply_re_extract(request, meshes),
                    title="Re-extract", pending=f"re-extracting {len(targets)} object(s) ...")
        return {"FINISHED"}


class NEURAL_OT_render_preview(bpy.types.Operator):
    """Sphere-trace all visible neural objects from the active camera into the 'Neural Preview' image"""

    bl_idname = "neural.render_preview"
    bl_label = "Render Neural Preview"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not tasks.busy("preview")

    def execute(self, context: bpy.types.Context) -> set[str]:
        objects = [o for o in context.scene.objects if is_neural(o) and o.visible_get()]
        try:
            request = preview_request(context.scene, objects)
        except ServiceError as error:
            self.report({"ERROR"}, error.detail)
            return {"CANCELLED"}
        settings = connection_settings(context)

        def done(result) -> str:
            ids, pixels = result
            remember_ids(ids)
            image = show_preview(pixels)
            return f"rendered {len(objects)} neural object(s) into '{image.name}'"

        tasks.start("preview", lambda: render_remote(tasks.client(settings), request), done,
                    title="Render Preview", pending=f"rendering {request.width} x {request.height} ...")
        return {"FINISHED"}


class NEURAL_OT_start_service(bpy.types.Operator):
    """Start neural-shapes serve as a child of Blender (when none answers on the data folder)"""

    bl_idname = "neural.start_service"
    bl_label = "Start Service"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not tasks.busy("service")

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings, command = connection_settings(context), preferences(context).backend_command.strip()
        tasks.start("service", lambda: _start(settings, command), str,
                    title="Start Service", pending="starting the service ...", line="neural_shapes_status")
        return {"FINISHED"}


class NEURAL_OT_stop_service(bpy.types.Operator):
    """Stop the service this Blender started"""

    bl_idname = "neural.stop_service"
    bl_label = "Stop Service"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return bool(_service) and not tasks.busy("service")

    def execute(self, context: bpy.types.Context) -> set[str]:
        tasks.start("service", lambda: f"service stopped (exit code {stop_services()})", str,
                    title="Stop Service", pending="stopping the service ...", line="neural_shapes_status")
        return {"FINISHED"}


def _start(settings: ConnectionSettings, command: str) -> str:
    """A worker's Start Service: none when one answers on the data folder (its service.json checked
    first), else a child process; returns the status line."""
    status = check_connection(settings, tasks.interrupter())
    if status.startswith("connected"):
        return f"already running, {status}"
    tasks.pause(0)  # Interrupted when the add-on was disabled meanwhile: spawn nothing then
    _, url = start_service(command, settings.folder, spawned=_service)
    return f"started at {url}; {check_connection(settings, tasks.interrupter())}"


def stop_services() -> int | None:
    """Stop the services this Blender started (a worker, or unregister); the last exit code."""
    code = None
    while _service:
        code = stop_service(_service.pop())
    return code
