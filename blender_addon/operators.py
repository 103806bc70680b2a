"""Operators: read properties, call the bpy-free client and the workflows, report errors.

Convert reads the evaluated meshes in ``execute`` (main thread, fast) and hands the uploads and the
job to :mod:`.jobs`, which follows it without blocking the UI and creates the neural objects at the end.
Only the main thread touches bpy.
"""

from __future__ import annotations

import bpy

from . import jobs
from .client.client import ServiceError
from .connection import check_connection, default_data_dir, make_client, start_service
from .conversion import collect_meshes, conversion_job, submit
from .neural_objects import is_neural, re_extract, render_preview
from .settings import connection_settings, preferences

_service: list = []  # the service process this Blender started, if any


class NEURAL_OT_convert_selected(bpy.types.Operator):
    """Fit a neural shape to every selected mesh object (modifiers applied) in one batched job"""

    bl_idname = "neural.convert_selected"
    bl_label = "Convert Selected to Neural"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not jobs.busy()

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = connection_settings(context)
        try:
            client = make_client(settings)
            meshes = collect_meshes(list(context.selected_objects), context.evaluated_depsgraph_get())
        except ServiceError as error:
            self.report({"ERROR"}, error.detail)
            return {"CANCELLED"}
        fit = {"target_surface_error": context.scene.neural_shapes_target_error}
        # Uploads can take a while for big meshes: the worker thread does the HTTP, the timer picks it up.
        jobs.start(context, settings, conversion_job(meshes, context.scene.neural_shapes_resolution), lambda: submit(client, meshes, fit))
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
        try:
            jobs.cancel(context.window_manager.neural_shapes_key)
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
