"""The add-on's preferences (where the service is) and the connection settings read from them."""

from __future__ import annotations

import bpy

from .connection import ConnectionSettings


class NeuralShapesPreferences(bpy.types.AddonPreferences):
    # __package__: "neural_shapes" as a legacy add-on, "bl_ext.<repo>.neural_shapes" as an extension.
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
        layout.operator("neural.check_connection", icon="URL")


def connection_settings(context: bpy.types.Context) -> ConnectionSettings:
    prefs = context.preferences.addons[__package__].preferences
    return ConnectionSettings(url=prefs.service_url.strip(), token=prefs.token.strip(), data_dir=bpy.path.abspath(prefs.data_dir).strip())
