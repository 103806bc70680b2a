"""Registers the add-on's classes (one tuple) and the properties it keeps on the window manager and scene;
unregister also ends the add-on's background work (timer, workers, requests in flight) and stops a
service this Blender started."""

from __future__ import annotations

import bpy

from . import tasks
from .neural_objects import OPERATIONS
from .nf2vec_operators import (
    NEURAL_OT_add_library_shape,
    NEURAL_OT_classify,
    NEURAL_OT_complete,
    NEURAL_OT_find_similar,
    NEURAL_OT_generate,
    NEURAL_OT_interpolate,
    NEURAL_OT_nf2vec_info,
)
from .operators import (
    NEURAL_OT_cancel,
    NEURAL_OT_check_connection,
    NEURAL_OT_convert_selected,
    NEURAL_OT_re_extract,
    NEURAL_OT_render_preview,
    NEURAL_OT_start_service,
    NEURAL_OT_stop_service,
    stop_services,
)
from .settings import NeuralShapesPreferences
from .ui import VIEW3D_PT_neural_shapes, draw_status_bar


class NeuralSimilarShape(bpy.types.PropertyGroup):
    """A row of Find Similar's list (``name``: the library shape's name)."""

    shape_id: bpy.props.StringProperty(name="Shape id")
    distance: bpy.props.FloatProperty(name="Distance", description="Between the nf2vec codes (latent z or embeddings)")


class NeuralClassProbability(bpy.types.PropertyGroup):
    """A row of Classify's list (``name``: the class)."""

    probability: bpy.props.FloatProperty(name="Probability", subtype="FACTOR", min=0.0, max=1.0)


classes = (
    NeuralShapesPreferences,
    NeuralSimilarShape,
    NeuralClassProbability,
    NEURAL_OT_check_connection,
    NEURAL_OT_convert_selected,
    NEURAL_OT_cancel,
    NEURAL_OT_re_extract,
    NEURAL_OT_render_preview,
    NEURAL_OT_start_service,
    NEURAL_OT_stop_service,
    NEURAL_OT_nf2vec_info,
    NEURAL_OT_interpolate,
    NEURAL_OT_generate,
    NEURAL_OT_complete,
    NEURAL_OT_find_similar,
    NEURAL_OT_add_library_shape,
    NEURAL_OT_classify,
    VIEW3D_PT_neural_shapes,
)

_window_manager_props = {
    "neural_shapes_status": lambda: bpy.props.StringProperty(name="Service status", default=""),
    "neural_shapes_job": lambda: bpy.props.StringProperty(name="Running job", default=""),
    "neural_shapes_stage": lambda: bpy.props.StringProperty(name="Stage", default=""),
    "neural_shapes_progress": lambda: bpy.props.FloatProperty(name="Progress", default=0.0, min=0.0, max=1.0, subtype="FACTOR"),
    "neural_shapes_message": lambda: bpy.props.StringProperty(name="Last result", default=""),
    "neural_shapes_nf2vec": lambda: bpy.props.StringProperty(name="nf2vec model", default=""),
    "neural_shapes_similar": lambda: bpy.props.CollectionProperty(type=NeuralSimilarShape),
    "neural_shapes_similar_to": lambda: bpy.props.StringProperty(name="Similar to", default=""),
    "neural_shapes_classes": lambda: bpy.props.CollectionProperty(type=NeuralClassProbability),
    "neural_shapes_classes_of": lambda: bpy.props.StringProperty(name="Classes of", default=""),
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
    tasks.begin()


def unregister() -> None:
    tasks.interrupt()  # first: requests in flight are broken off, no worker starts another
    stop_services()  # also one still starting: its worker then stops waiting for it
    tasks.stop()
    stop_services()  # one a worker spawned meanwhile
    bpy.types.STATUSBAR_HT_header.remove(draw_status_bar)
    del bpy.types.Scene.neural_shapes_resolution
    del bpy.types.Scene.neural_shapes_target_error
    del bpy.types.Object.neural_smooth_radius
    del bpy.types.Object.neural_operation
    for name in _window_manager_props:
        delattr(bpy.types.WindowManager, name)
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
