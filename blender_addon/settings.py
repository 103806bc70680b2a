"""The add-on's preferences (where the service is) and the connection settings read from them."""

from __future__ import annotations

import bpy

from .client.connection import ConnectionSettings


class NeuralShapesPreferences(bpy.types.AddonPreferences):
    # __package__: "neural_shapes" as a legacy add-on, "bl_ext.<repo>.neural_shapes" as an extension.
    bl_idname = __package__

    service_url: bpy.props.StringProperty(
        name="Service URL",
        description="URL of neural-shapes serve; empty: the service running on the data folder",
        default="",
    )
    token: bpy.props.StringProperty(
        name="Token", description="Service token; empty: read from the data folder", default="", subtype="PASSWORD"
    )
    data_dir: bpy.props.StringProperty(
        name="Data folder",
        description="The service's --data-dir; empty: the platform default",
        default="",
        subtype="DIR_PATH",
    )
    backend_command: bpy.props.StringProperty(
        name="Backend command",
        description="How to run the backend: path to neural-shapes in its venv (or 'VENV/bin/python -m backend.cli'); empty: from PATH",
        default="",
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.prop(self, "service_url")
        layout.prop(self, "token")
        layout.prop(self, "data_dir")
        layout.prop(self, "backend_command")
        row = layout.row()
        row.operator("neural.check_connection", icon="URL")
        row.operator("neural.start_service", icon="PLAY")
        row.operator("neural.stop_service", icon="PAUSE")


def preferences(context: bpy.types.Context) -> NeuralShapesPreferences:
    return context.preferences.addons[__package__].preferences


def connection_settings(context: bpy.types.Context) -> ConnectionSettings:
    prefs = preferences(context)
    return ConnectionSettings(
        url=prefs.service_url.strip(), token=prefs.token.strip(), data_dir=bpy.path.abspath(prefs.data_dir).strip()
    )
