"""The sidebar panel: 3D Viewport > N > Neural Shapes."""

from __future__ import annotations

import bpy


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
        if wm.neural_shapes_stage and hasattr(box, "progress"):  # progress bars exist from Blender 4.0
            box.progress(factor=wm.neural_shapes_progress, text=wm.neural_shapes_stage)
        elif wm.neural_shapes_stage:
            box.label(text=f"{wm.neural_shapes_progress:.0%} {wm.neural_shapes_stage}")
        box.operator("neural.cancel", icon="CANCEL")

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
        # Room for the nf2vec operators (interpolate, generate, complete, similar) of a later issue.


def draw_status_bar(self, context: bpy.types.Context) -> None:
    """Appended to the status bar: the running conversion's progress."""
    wm = context.window_manager
    if not wm.neural_shapes_key or wm.neural_shapes_progress >= 1.0 or not wm.neural_shapes_stage:
        return
    if hasattr(self.layout, "progress"):
        self.layout.progress(factor=wm.neural_shapes_progress, text=f"Neural Shapes: {wm.neural_shapes_stage}")
    else:
        self.layout.label(text=f"Neural Shapes {wm.neural_shapes_progress:.0%}: {wm.neural_shapes_stage}")
