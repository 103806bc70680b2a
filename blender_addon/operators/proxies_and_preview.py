"""Neural object operators: Re-extract (mesh the selected neural objects again), Render Neural Preview
(sphere-trace the visible ones from the scene camera) and Save Neural Shape (the active one's ``.h5``). Both read the objects on the main thread and
hand the HTTP to :mod:`..background.workers`; a bad selection is reported before anything starts."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy_extras.io_utils import ExportHelper

from ..background import workers
from ..errors import LocalError, report
from ..scene.neural_objects import (
    Extraction,
    apply_re_extract,
    is_neural,
    preview_request,
    re_extract_remote,
    remember_ids,
    render_remote,
    show_preview,
    stored_shape,
)
from ..scene.shape_store import shape_bytes
from ..settings import connection_settings
from .base import WorkerTask


class NEURAL_OT_re_extract(WorkerTask, bpy.types.Operator):
    """Mesh the selected neural objects again, each at its viewport resolution (materials, modifiers and
    linked duplicates stay)"""

    bl_idname = "neural.re_extract"
    bl_label = "Re-extract"
    bl_options = {"REGISTER", "UNDO"}
    slot = "re_extract"

    method: bpy.props.EnumProperty(
        name="Method",
        items=[
            ("sparse", "Sparse", "Lipschitz octree, cost follows the surface"),
            ("dense", "Dense", "Every grid node"),
        ],
    )

    def execute(self, context: bpy.types.Context) -> set[str]:
        targets = [o for o in context.selected_objects if is_neural(o)]
        if not targets:
            return report(self, LocalError("select at least one neural object"))
        settings = connection_settings(context)
        resolutions = [o.neural_shapes.viewport_resolution for o in targets]
        request = Extraction([stored_shape(o) for o in targets], resolutions, self.method)

        def done(meshes) -> str:
            line = apply_re_extract(request, meshes)
            workers.undo_step("Re-extract Neural Objects")
            return line

        return self.start_task(
            lambda: re_extract_remote(workers.client(settings), request),
            done,
            pending=f"re-extracting {len(targets)} object(s) ...",
        )


class NEURAL_OT_render_preview(WorkerTask, bpy.types.Operator):
    """Sphere-trace all visible neural objects from the active camera into the 'Neural Preview' image"""

    bl_idname = "neural.render_preview"
    bl_label = "Render Neural Preview"
    slot = "preview"

    def execute(self, context: bpy.types.Context) -> set[str]:
        objects = [o for o in context.scene.objects if is_neural(o) and o.visible_get()]
        try:
            request = preview_request(context.scene, objects)
        except LocalError as error:
            return report(self, error)
        settings = connection_settings(context)

        def done(result) -> str:
            ids, pixels = result
            remember_ids(ids)
            image = show_preview(pixels)
            return f"rendered {len(objects)} neural object(s) into '{image.name}'"

        return self.start_task(
            lambda: render_remote(workers.client(settings), request),
            done,
            title="Render Preview",
            pending=f"rendering {request.width} x {request.height} ...",
        )


class NEURAL_OT_save_shape(bpy.types.Operator, ExportHelper):
    """Save the active neural object's shape as an .h5 file (the format neural-shapes reads everywhere)"""

    bl_idname = "neural.save_shape"
    bl_label = "Save Neural Shape"
    filename_ext = ".h5"
    filter_glob: bpy.props.StringProperty(default="*.h5", options={"HIDDEN"})

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.active_object is not None and is_neural(context.active_object)

    def invoke(self, context: bpy.types.Context, event) -> set[str]:
        self.filepath = bpy.path.clean_name(context.active_object.name.removesuffix(" (neural)")) + self.filename_ext
        return super().invoke(context, event)

    def execute(self, context: bpy.types.Context) -> set[str]:
        path = Path(bpy.path.abspath(self.filepath))
        partial = path.with_name(f".{path.name}.partial")  # renamed once whole: no half-written .h5
        try:
            partial.write_bytes(shape_bytes(context.active_object))
            partial.replace(path)
        except OSError as error:
            partial.unlink(missing_ok=True)
            return report(self, LocalError(f"{path}: cannot write the shape ({error.strerror or error})"))
        self.report({"INFO"}, f"saved {path.name}")
        return {"FINISHED"}
