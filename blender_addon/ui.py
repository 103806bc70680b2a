"""The sidebar panel, 3D Viewport > N > Neural Shapes: a parent panel (the running job and the last
result) with one sub-panel per task: Service, Convert, Neural Object, nf2vec; and the Neural Shape panel
of Properties > Object."""

from __future__ import annotations

import bpy

from .background import tracked_jobs
from .properties import NeuralShapesState, state
from .scene.neural_objects import is_neural
from .scene.shape_store import shape_info

TOP_CLASSES = 5  # rows of Classify's list shown
PARENT = "VIEW3D_PT_neural_shapes"


class _Sidebar:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Neural Shapes"


class _SubPanel(_Sidebar):
    """One task's sub-panel of the Neural Shapes panel."""

    bl_parent_id = PARENT


class VIEW3D_PT_neural_shapes(_Sidebar, bpy.types.Panel):
    bl_label = "Neural Shapes"

    def draw(self, context: bpy.types.Context) -> None:
        panel = state(context)
        _draw_job(self.layout, panel)
        if panel.message:
            self.layout.label(text=panel.message)


class VIEW3D_PT_neural_shapes_service(_SubPanel, bpy.types.Panel):
    bl_label = "Service"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.label(text=state(context).status or "service not checked yet", icon="URL")
        row = layout.row(align=True)
        row.operator("neural.check_connection")
        row.operator("neural.start_service", text="Start")
        row.operator("neural.stop_service", text="Stop")


class VIEW3D_PT_neural_shapes_convert(_SubPanel, bpy.types.Panel):
    bl_label = "Convert"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.neural_shapes
        layout.prop(settings, "target_error")
        layout.prop(settings, "quality")
        layout.prop(settings, "open_meshes")
        layout.prop(settings, "resolution")
        layout.operator("neural.convert_selected", icon="MESH_ICOSPHERE")


class VIEW3D_PT_neural_shapes_object(_SubPanel, bpy.types.Panel):
    bl_label = "Neural Object"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        row = layout.row(align=True)
        row.operator("neural.re_extract", text="Re-extract (sparse)").method = "sparse"
        row.operator("neural.re_extract", text="Dense").method = "dense"
        obj = context.active_object
        if obj is not None and is_neural(obj):
            _draw_object_settings(layout, obj)
        layout.operator("neural.render_preview", icon="RENDER_STILL")


class OBJECT_PT_neural_shape(bpy.types.Panel):
    """Properties > Object > Neural Shape: what the active neural object is, its resolutions and CSG role."""

    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "object"
    bl_label = "Neural Shape"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.object is not None and is_neural(context.object)

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        obj = context.object
        info, metrics = shape_info(obj)
        column = layout.column(align=True)
        for label, key in (
            ("Shape", "name"),
            ("Source", "source"),
            ("Family", "family_id"),
            ("Network", "architecture"),
        ):
            column.label(text=f"{label}: {info.get(key) or '-'}")
        column = layout.column(align=True)
        for label, key, digits in SHOWN_METRICS:
            if key in metrics:
                column.label(text=f"{label}: {metrics[key]:.{digits}f}")
        _draw_object_settings(layout, obj)
        row = layout.row(align=True)
        row.operator("neural.re_extract", text="Re-extract", icon="FILE_REFRESH").method = "sparse"
        row.operator("neural.save_shape", text="Save .h5", icon="EXPORT")


SHOWN_METRICS = (
    ("Surface error", "surface_error", 4),
    ("Chamfer", "chamfer", 4),
    ("F-score", "fscore", 3),
    ("Fit seconds", "fit_seconds", 1),
)


def _draw_object_settings(layout: bpy.types.UILayout, obj: bpy.types.Object) -> None:
    settings = obj.neural_shapes
    column = layout.column(align=True)
    column.prop(settings, "viewport_resolution")
    column.prop(settings, "render_resolution")
    layout.prop(settings, "operation")
    if settings.operation == "smooth_union":
        layout.prop(settings, "smooth_radius")


class VIEW3D_PT_neural_shapes_nf2vec(_SubPanel, bpy.types.Panel):
    """nf2vec: the model, the operators, and the lists Find Similar and Classify fill."""

    bl_label = "nf2vec"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        panel = state(context)
        row = layout.row(align=True)
        row.label(text=f"nf2vec: {panel.nf2vec or 'not checked yet'}")
        row.operator("neural.nf2vec_info", text="", icon="FILE_REFRESH")
        row = layout.row(align=True)
        row.operator("neural.interpolate", text="Interpolate...")
        row.operator("neural.generate", text="Generate...")
        row = layout.row(align=True)
        row.operator("neural.complete")
        row.operator("neural.classify")
        layout.operator("neural.find_similar", text="Find Similar...", icon="VIEWZOOM")
        if len(panel.similar):
            column = layout.column(align=True)
            column.label(text=f"Similar to {panel.similar_to}:")
            for item in panel.similar:
                row = column.row(align=True)
                row.label(text=item.name)
                row.label(text=f"{item.distance:.3f}")
                row.operator("neural.add_library_shape", text="", icon="ADD").shape_id = item.shape_id
        if len(panel.classes):
            column = layout.column(align=True)
            column.label(text=f"{panel.classes_of} looks like:")
            for item in list(panel.classes)[:TOP_CLASSES]:
                column.label(text=f"{item.name}: {item.probability:.0%}")


# The parent first: a sub-panel registers only once its parent is.
panels = (
    VIEW3D_PT_neural_shapes,
    VIEW3D_PT_neural_shapes_service,
    VIEW3D_PT_neural_shapes_convert,
    VIEW3D_PT_neural_shapes_object,
    VIEW3D_PT_neural_shapes_nf2vec,
    OBJECT_PT_neural_shape,
)


def _draw_job(layout: bpy.types.UILayout, panel: NeuralShapesState) -> None:
    """The running (or last) job's progress and the Cancel button: convert and the nf2vec jobs."""
    if panel.stage and hasattr(layout, "progress"):  # progress bars exist from Blender 4.0
        layout.progress(factor=panel.progress, text=panel.stage)
    elif panel.stage:
        layout.label(text=f"{panel.progress:.0%} {panel.stage}")
    layout.operator("neural.cancel", icon="CANCEL")


def draw_status_bar(self, context: bpy.types.Context) -> None:
    """Appended to the status bar: the running job's progress."""
    panel = state(context)
    if not tracked_jobs.busy() or not panel.stage:
        return
    if hasattr(self.layout, "progress"):
        self.layout.progress(factor=panel.progress, text=f"Neural Shapes: {panel.stage}")
    else:
        self.layout.label(text=f"Neural Shapes {panel.progress:.0%}: {panel.stage}")
