"""The sidebar panel: 3D Viewport > N > Neural Shapes."""

from __future__ import annotations

import bpy

from . import jobs

TOP_CLASSES = 5  # rows of Classify's list shown


class VIEW3D_PT_neural_shapes(bpy.types.Panel):
    bl_label = "Neural Shapes"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Neural Shapes"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        wm = context.window_manager
        box = layout.box()
        box.label(text=wm.neural_shapes_status or "service not checked yet", icon="URL")
        row = box.row(align=True)
        row.operator("neural.check_connection")
        row.operator("neural.start_service", text="Start")
        row.operator("neural.stop_service", text="Stop")

        box = layout.box()
        box.prop(context.scene, "neural_shapes_target_error")
        box.prop(context.scene, "neural_shapes_resolution")
        box.operator("neural.convert_selected", icon="MESH_ICOSPHERE")
        _draw_job(layout.box(), wm)

        box = layout.box()
        row = box.row(align=True)
        row.operator("neural.re_extract", text="Re-extract (sparse)").method = "sparse"
        row.operator("neural.re_extract", text="Dense").method = "dense"
        obj = context.active_object
        if obj is not None and "neural_shape_h5" in obj:
            box.prop(obj, "neural_operation")
            if obj.neural_operation == "smooth_union":
                box.prop(obj, "neural_smooth_radius")
        box.operator("neural.render_preview", icon="RENDER_STILL")
        if wm.neural_shapes_message:
            box.label(text=wm.neural_shapes_message)
        _draw_nf2vec(layout.box(), wm)


def _draw_job(layout: bpy.types.UILayout, wm: bpy.types.WindowManager) -> None:
    """The running (or last) job's progress and the Cancel button: convert and the nf2vec jobs."""
    if wm.neural_shapes_stage and hasattr(layout, "progress"):  # progress bars exist from Blender 4.0
        layout.progress(factor=wm.neural_shapes_progress, text=wm.neural_shapes_stage)
    elif wm.neural_shapes_stage:
        layout.label(text=f"{wm.neural_shapes_progress:.0%} {wm.neural_shapes_stage}")
    layout.operator("neural.cancel", icon="CANCEL")


def _draw_nf2vec(layout: bpy.types.UILayout, wm: bpy.types.WindowManager) -> None:
    """nf2vec: the model, the operators, and the lists Find Similar and Classify fill."""
    row = layout.row(align=True)
    row.label(text=f"nf2vec: {wm.neural_shapes_nf2vec or 'not checked yet'}")
    row.operator("neural.nf2vec_info", text="", icon="FILE_REFRESH")
    row = layout.row(align=True)
    row.operator("neural.interpolate", text="Interpolate...")
    row.operator("neural.generate", text="Generate...")
    row = layout.row(align=True)
    row.operator("neural.complete")
    row.operator("neural.classify")
    layout.operator("neural.find_similar", text="Find Similar...", icon="VIEWZOOM")
    if len(wm.neural_shapes_similar):
        column = layout.column(align=True)
        column.label(text=f"Similar to {wm.neural_shapes_similar_to}:")
        for item in wm.neural_shapes_similar:
            row = column.row(align=True)
            row.label(text=item.name)
            row.label(text=f"{item.distance:.3f}")
            row.operator("neural.add_library_shape", text="", icon="ADD").shape_id = item.shape_id
    if len(wm.neural_shapes_classes):
        column = layout.column(align=True)
        column.label(text=f"{wm.neural_shapes_classes_of} looks like:")
        for item in list(wm.neural_shapes_classes)[:TOP_CLASSES]:
            column.label(text=f"{item.name}: {item.probability:.0%}")


def draw_status_bar(self, context: bpy.types.Context) -> None:
    """Appended to the status bar: the running conversion's progress."""
    wm = context.window_manager
    if not jobs.busy() or not wm.neural_shapes_stage:
        return
    if hasattr(self.layout, "progress"):
        self.layout.progress(factor=wm.neural_shapes_progress, text=f"Neural Shapes: {wm.neural_shapes_stage}")
    else:
        self.layout.label(text=f"Neural Shapes {wm.neural_shapes_progress:.0%}: {wm.neural_shapes_stage}")
