"""Registers the add-on's classes (one tuple) and the properties it keeps on the window manager and scene."""

from __future__ import annotations

import bpy

from .neural_objects import OPERATIONS
from .operators import (
    NEURAL_OT_cancel,
    NEURAL_OT_check_connection,
    NEURAL_OT_convert_selected,
    NEURAL_OT_re_extract,
    NEURAL_OT_render_preview,
    NEURAL_OT_start_service,
    NEURAL_OT_stop_service,
)
from .settings import NeuralShapesPreferences
from .ui import VIEW3D_PT_neural_shapes, draw_status_bar

classes = (
    NeuralShapesPreferences,
    NEURAL_OT_check_connection,
    NEURAL_OT_convert_selected,
    NEURAL_OT_cancel,
    NEURAL_OT_re_extract,
    NEURAL_OT_render_preview,
    NEURAL_OT_start_service,
    NEURAL_OT_stop_service,
    VIEW3D_PT_neural_shapes,
)

_window_manager_props = {
    "neural_shapes_status": lambda: bpy.props.StringProperty(name="Service status", default=""),
    "neural_shapes_job": lambda: bpy.props.StringProperty(name="Running job", default=""),
    "neural_shapes_key": lambda: bpy.props.StringProperty(name="Running conversion", default=""),
    "neural_shapes_stage": lambda: bpy.props.StringProperty(name="Stage", default=""),
    "neural_shapes_progress": lambda: bpy.props.FloatProperty(name="Progress", default=0.0, min=0.0, max=1.0, subtype="FACTOR"),
}


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    for name, make in _window_manager_props.items():
        setattr(bpy.types.WindowManager, name, make())
    bpy.types.Object.neural_operation = bpy.props.EnumProperty(name="CSG", items=OPERATIONS, default="union")
    bpy.types.Object.neural_smooth_radius = bpy.props.FloatProperty(name="Smooth radius", default=0.1, min=0.0, subtype="DISTANCE")
    bpy.types.Scene.neural_shapes_target_error = bpy.props.FloatProperty(
        name="Target surface error", description="Fitting stops at this mean |SDF| on the surface (normalised units)",
        default=0.003, min=0.0005, max=0.05, precision=4,
    )
    bpy.types.Scene.neural_shapes_resolution = bpy.props.IntProperty(
        name="Proxy resolution", description="Marching cubes grid of the neural objects' proxy meshes", default=128, min=16, max=1024
    )
    bpy.types.STATUSBAR_HT_header.append(draw_status_bar)


def unregister() -> None:
    bpy.types.STATUSBAR_HT_header.remove(draw_status_bar)
    del bpy.types.Scene.neural_shapes_resolution
    del bpy.types.Scene.neural_shapes_target_error
    del bpy.types.Object.neural_smooth_radius
    del bpy.types.Object.neural_operation
    for name in _window_manager_props:
        delattr(bpy.types.WindowManager, name)
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
