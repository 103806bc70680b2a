"""Convert operators: Convert Selected to Neural (a service fit job whose shapes become neural objects)
and Cancel (the running job, convert's or an nf2vec one)."""

from __future__ import annotations

import bpy

from ..background import tracked_jobs
from ..client.errors import ServiceError
from ..errors import LocalError, report
from ..properties import state
from ..scene.source_meshes import collect_meshes, conversion_job, submit
from ..settings import connection_settings
from .base import ServiceJob


class NEURAL_OT_convert_selected(ServiceJob, bpy.types.Operator):
    """Fit a neural shape to every selected mesh object (modifiers applied) in one batched job"""

    bl_idname = "neural.convert_selected"
    bl_label = "Convert Selected to Neural"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.neural_shapes
        # read here, not on the worker
        fit = {"target_surface_error": settings.target_error, "open_meshes": settings.open_meshes}
        quality = settings.quality
        try:
            meshes = collect_meshes(list(context.selected_objects), context.evaluated_depsgraph_get())
            tracked_jobs.start(
                connection_settings(context),
                conversion_job(meshes, settings.resolution),
                lambda client: submit(client, meshes, fit, quality),
            )
        except (LocalError, ServiceError) as error:
            return report(self, error)
        self.report({"INFO"}, f"converting {len(meshes)} object(s)")
        return {"FINISHED"}


class NEURAL_OT_cancel(bpy.types.Operator):
    """Cancel the running job"""

    bl_idname = "neural.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return tracked_jobs.busy()

    def execute(self, context: bpy.types.Context) -> set[str]:
        tracked_jobs.cancel()
        state(context).stage = "cancelling"
        return {"FINISHED"}
