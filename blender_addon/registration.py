"""Blender side of the add-on: preferences, operators and the sidebar panel, registered as one tuple.

Operators read properties, call the bpy-free modules (``connection``, ``client``) and turn their
errors into Blender reports. Network calls here are short (a health check with a 10 s timeout);
slow work (fitting) goes through service jobs polled by timers.
"""

from __future__ import annotations

import bpy

from .connection import ConnectionSettings, check_connection


def connection_settings(context: bpy.types.Context) -> ConnectionSettings:
    # __package__: "neural_shapes" as a legacy add-on, "bl_ext.<repo>.neural_shapes" as an extension.
    prefs = context.preferences.addons[__package__].preferences
    return ConnectionSettings(url=prefs.service_url.strip(), token=prefs.token.strip(), data_dir=bpy.path.abspath(prefs.data_dir).strip())


class NeuralShapesPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    service_url: bpy.props.StringProperty(
        name="Service URL", description="URL of neural-shapes serve; empty: the service running on the data folder", default=""
    )
    token: bpy.props.StringProperty(
        name="Token", description="Service token; empty: read from the data folder", default="", subtype="PASSWORD"
    )
    data_dir: bpy.props.StringProperty(
        name="Data folder", description="The service's --data-dir; empty: the platform default", default="", subtype="DIR_PATH"
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.prop(self, "service_url")
        layout.prop(self, "token")
        layout.prop(self, "data_dir")
        layout.operator(NEURAL_OT_check_connection.bl_idname, icon="URL")


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


class VIEW3D_PT_neural_shapes(bpy.types.Panel):
    bl_label = "Neural Shapes"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Neural Shapes"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        box = layout.box()
        box.label(text=context.window_manager.neural_shapes_status or "not checked yet", icon="URL")
        box.operator(NEURAL_OT_check_connection.bl_idname)


classes = (NeuralShapesPreferences, NEURAL_OT_check_connection, VIEW3D_PT_neural_shapes)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.WindowManager.neural_shapes_status = bpy.props.StringProperty(name="Service status", default="")


def unregister() -> None:
    del bpy.types.WindowManager.neural_shapes_status
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
