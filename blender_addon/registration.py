"""Registers the add-on's classes (one tuple), hangs its property groups on Scene, Object and
WindowManager and adds its handlers (older files' shapes adopted on load, render-resolution surfaces in
final renders); unregister also ends the add-on's background work (timer, workers, requests in flight)
and stops a service this Blender started."""

from __future__ import annotations

import bpy

from . import properties
from .background import workers
from .operators.mesh_conversion import NEURAL_OT_cancel, NEURAL_OT_convert_selected
from .operators.nf2vec_tools import (
    NEURAL_OT_add_library_shape,
    NEURAL_OT_classify,
    NEURAL_OT_complete,
    NEURAL_OT_find_similar,
    NEURAL_OT_generate,
    NEURAL_OT_interpolate,
    NEURAL_OT_nf2vec_info,
)
from .operators.proxies_and_preview import NEURAL_OT_re_extract, NEURAL_OT_render_preview, NEURAL_OT_save_shape
from .operators.service_control import (
    NEURAL_OT_check_connection,
    NEURAL_OT_start_service,
    NEURAL_OT_stop_service,
    stop_services,
)
from .scene import render_time
from .scene.shape_store import adopt_legacy_on_load
from .settings import NeuralShapesPreferences
from .ui import draw_status_bar, panels

classes = (
    NeuralShapesPreferences,
    *properties.classes,
    NEURAL_OT_check_connection,
    NEURAL_OT_convert_selected,
    NEURAL_OT_cancel,
    NEURAL_OT_re_extract,
    NEURAL_OT_render_preview,
    NEURAL_OT_save_shape,
    NEURAL_OT_start_service,
    NEURAL_OT_stop_service,
    NEURAL_OT_nf2vec_info,
    NEURAL_OT_interpolate,
    NEURAL_OT_generate,
    NEURAL_OT_complete,
    NEURAL_OT_find_similar,
    NEURAL_OT_add_library_shape,
    NEURAL_OT_classify,
    *panels,
)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    properties.attach()
    bpy.types.STATUSBAR_HT_header.append(draw_status_bar)
    bpy.app.handlers.load_post.append(adopt_legacy_on_load)
    render_time.attach()
    workers.begin()


def unregister() -> None:
    workers.interrupt()  # first: requests in flight are broken off, no worker starts another
    stop_services()  # also one still starting: its worker then stops waiting for it
    workers.stop()
    stop_services()  # one a worker spawned meanwhile
    render_time.detach()
    bpy.app.handlers.load_post.remove(adopt_legacy_on_load)
    bpy.types.STATUSBAR_HT_header.remove(draw_status_bar)
    properties.detach()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
