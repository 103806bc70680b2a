"""nf2vec operators: interpolate, generate and complete (service jobs followed by
:mod:`..background.tracked_jobs`, the new neural objects placed where each operator says; an undo step
once they are added), find similar library shapes and classify (the results listed in the panel), and
add a library shape to the scene.

Selections are checked in ``execute``, so a bad one is an error report and nothing starts; everything
that asks the service runs on a worker (:mod:`..background.workers`), and a refused request (no nf2vec model, a shape
of another family) ends the task or job with the service's line, the scene as it was. Neural objects
the service has never seen are imported from their stored ``.h5`` bytes first.
"""

from __future__ import annotations

from collections.abc import Callable

import bpy
from mathutils import Matrix

from ..background import tracked_jobs, workers
from ..client.client import Client
from ..client.errors import ServiceError
from ..client.models import ClassProbability, Job, Nf2vecInfo, SimilarShape
from ..errors import LocalError, report
from ..properties import state
from ..scene.neural_objects import (
    FetchedShape,
    StoredShape,
    add_neural_object,
    ensure_on_service,
    fetch_shapes,
    is_neural,
    remember_ids,
    stored_shape,
)
from ..scene.placement import between, centred_at, in_a_row
from ..scene.source_meshes import collect_meshes
from ..settings import connection_settings
from .base import AsksFirst, ServiceJob, WorkerTask

ANY_CLASS = ("any", "Any", "Any class the generator makes")
# Blender keeps no reference to dynamic enum items: they must live here. Refreshed by the info request.
_class_items: list[tuple[str, str, str]] = [ANY_CLASS]


def _generate_classes(self, context: bpy.types.Context) -> list[tuple[str, str, str]]:
    return _class_items


def _show_info(info: Nf2vecInfo) -> str:
    """Take the nf2vec model's classes for Generate (main thread); returns the panel's nf2vec line."""
    _class_items[:] = [ANY_CLASS, *((name, name.capitalize(), f"a generated {name}") for name in info.classes)]
    missing = [task for task, available in info.tasks.items() if not available]
    return f"{info.model_id}, {info.decoder} decoder" + (f" (no {', '.join(missing)})" if missing else "")


def _refresh_info(context: bpy.types.Context) -> None:
    """Ask for the nf2vec model on a worker: the panel's line and Generate's classes."""
    settings = connection_settings(context)
    workers.start(
        "nf2vec_info",
        lambda: workers.client(settings).nf2vec_info(),
        _show_info,
        title="Check nf2vec",
        pending="asking ...",
        line="nf2vec",
        failed=str,
    )


def _active_neural(context: bpy.types.Context) -> bpy.types.Object:
    obj = context.active_object
    if obj is None or not is_neural(obj):
        raise LocalError("make a neural object active")
    return obj


def _imported(client: Client, stored: StoredShape, tracked: tracked_jobs.TrackedJob) -> str:
    """:func:`ensure_on_service` inside a job's submission, the id kept for the object (a worker)."""
    shape_id = ensure_on_service(client, stored)
    tracked.imported.append((stored, shape_id))
    return shape_id


class NEURAL_OT_nf2vec_info(WorkerTask, bpy.types.Operator):
    """Ask the service which nf2vec model it uses and what it can do"""

    bl_idname = "neural.nf2vec_info"
    bl_label = "Check nf2vec"
    slot = "nf2vec_info"

    def execute(self, context: bpy.types.Context) -> set[str]:
        _refresh_info(context)
        return {"FINISHED"}


class NEURAL_OT_interpolate(AsksFirst, ServiceJob, bpy.types.Operator):
    """Make in-betweens of the two selected neural objects (from the other one to the active one), placed in a row between them"""

    bl_idname = "neural.interpolate"
    bl_label = "Interpolate"
    bl_options = {"REGISTER", "UNDO"}

    t: bpy.props.FloatProperty(
        name="t",
        description="Where the in-between lies: 0 is the first object, 1 the active one (when count is 1)",
        default=0.5,
        min=0.0,
        max=1.0,
        subtype="FACTOR",
    )
    count: bpy.props.IntProperty(
        name="Count", description="In-betweens, evenly spaced (1: the one at t)", default=1, min=1, max=32
    )
    space: bpy.props.EnumProperty(
        name="Space",
        items=[
            (
                "embedding",
                "Embedding",
                "Through the service's nf2vec decoder (latent family: instant; implicit: decode and fit, seconds per shape)",
            ),
            ("weights", "Weights", "Blend the networks' weights directly (instant, unmeasured quality)"),
        ],
    )

    def execute(self, context: bpy.types.Context) -> set[str]:
        pair = [o for o in context.selected_objects if is_neural(o)]
        if len(pair) != 2:
            return report(self, LocalError(f"select exactly two neural objects ({len(pair)} selected)"))
        pair.sort(key=lambda o: (o == context.active_object, o.name))  # the active one last: t = 1
        (times, count), space = ([self.t], None) if self.count == 1 else (None, self.count), self.space
        a, b = (stored_shape(o) for o in pair)
        start, end = (o.matrix_world.copy() for o in pair)  # copies: the objects may change or go meanwhile

        def place(job: Job, shapes: list[FetchedShape]) -> list[Matrix]:
            return between(start, end, job.inputs["times"])

        tracked = tracked_jobs.TrackedJob(
            place, context.scene.neural_shapes.resolution, verb="interpolated", undo="Interpolate Neural Shapes"
        )

        def submit(client: Client) -> str:
            ids = [_imported(client, stored, tracked) for stored in (a, b)]
            return client.start_interpolate(*ids, times=times, count=count, space=space).id

        return self.start_job(context, tracked, submit)


class NEURAL_OT_generate(AsksFirst, ServiceJob, bpy.types.Operator):
    """Make new shapes with the nf2vec generator, placed in a row at the 3D cursor"""

    bl_idname = "neural.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER", "UNDO"}

    count: bpy.props.IntProperty(name="Count", default=1, min=1, max=32)
    seed: bpy.props.IntProperty(name="Seed", description="The same seed makes the same shapes", default=0, min=0)
    class_name: bpy.props.EnumProperty(
        name="Class", description="What to make (the classes come from Check nf2vec)", items=_generate_classes
    )

    def invoke(self, context: bpy.types.Context, event) -> set[str]:
        if not workers.busy("nf2vec_info"):
            _refresh_info(context)  # the dialog's class list fills in when the answer comes
        return super().invoke(context, event)

    def execute(self, context: bpy.types.Context) -> set[str]:
        count, seed = self.count, self.seed
        class_name = None if self.class_name == ANY_CLASS[0] else self.class_name
        cursor = context.scene.cursor.location.copy()

        def place(job: Job, shapes: list[FetchedShape]) -> list[Matrix]:
            return in_a_row(cursor, [s.centre for s in shapes], [s.size for s in shapes])

        tracked = tracked_jobs.TrackedJob(
            place, context.scene.neural_shapes.resolution, verb="generated", undo="Generate Neural Shapes"
        )
        return self.start_job(
            context, tracked, lambda client: client.start_generate(count, seed=seed, class_name=class_name).id
        )


class NEURAL_OT_complete(ServiceJob, bpy.types.Operator):
    """Complete the active object (a neural object, or a mesh that is fitted first) with nf2vec; the whole shape is placed over it"""

    bl_idname = "neural.complete"
    bl_label = "Complete"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        obj = context.active_object
        if obj is None or obj.type != "MESH":
            return report(self, LocalError("make a mesh or neural object active"))
        matrix = obj.matrix_world.copy()

        def place(job: Job, shapes: list[FetchedShape]) -> list[Matrix]:
            return [matrix.copy() for _ in shapes]  # the completed shape lies in the partial's frame

        tracked = tracked_jobs.TrackedJob(
            place, context.scene.neural_shapes.resolution, verb="completed", undo="Complete Neural Shape"
        )
        if is_neural(obj):
            stored = stored_shape(obj)
            return self.start_job(
                context,
                tracked,
                lambda client: client.start_complete(shape_id=_imported(client, stored, tracked)).id,
            )
        try:
            [mesh] = collect_meshes([obj], context.evaluated_depsgraph_get())
        except LocalError as error:
            return report(self, error)

        def submit(client: Client) -> str:
            if not client.nf2vec_info().tasks.get("complete"):  # refuse before a long upload
                raise ServiceError(0, "its nf2vec model cannot complete shapes (Check nf2vec says what it lacks)")
            return client.start_complete(upload_id=client.upload_mesh(mesh.vertices, mesh.faces, name=mesh.name).id).id

        return self.start_job(context, tracked, submit)


class NEURAL_OT_find_similar(AsksFirst, WorkerTask, bpy.types.Operator):
    """List the library shapes nearest to the active neural object by their nf2vec codes"""

    bl_idname = "neural.find_similar"
    bl_label = "Find Similar"
    slot = "similar"

    k: bpy.props.IntProperty(name="Shapes", description="How many to list", default=5, min=1, max=100)

    def execute(self, context: bpy.types.Context) -> set[str]:
        k = self.k
        return _ask_about_active(self, context, lambda client, shape_id: client.similar(shape_id, k=k), _show_similar)


class NEURAL_OT_add_library_shape(WorkerTask, bpy.types.Operator):
    """Add this library shape to the scene as a neural object at the 3D cursor"""

    bl_idname = "neural.add_library_shape"
    bl_label = "Add Library Shape"
    bl_options = {"REGISTER", "UNDO"}
    slot = "library"

    shape_id: bpy.props.StringProperty(name="Shape id")

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings, shape_id, resolution = (
            connection_settings(context),
            self.shape_id,
            context.scene.neural_shapes.resolution,
        )
        cursor = context.scene.cursor.location.copy()

        def done(shapes: list[FetchedShape]) -> str:
            [shape] = shapes
            obj = add_neural_object(shape, bpy.context.scene.collection, centred_at(cursor, shape.centre))
            for other in bpy.context.selected_objects:
                other.select_set(False)
            obj.select_set(True)
            bpy.context.view_layer.objects.active = obj
            workers.undo_step("Add Library Shape")
            return f"added {obj.name}"

        return self.start_task(
            lambda: fetch_shapes(workers.client(settings), [shape_id], resolution),
            done,
            pending="adding a library shape ...",
        )


class NEURAL_OT_classify(WorkerTask, bpy.types.Operator):
    """Show which classes the active neural object looks like to the nf2vec model"""

    bl_idname = "neural.classify"
    bl_label = "Classify"
    slot = "classify"

    def execute(self, context: bpy.types.Context) -> set[str]:
        return _ask_about_active(self, context, lambda client, shape_id: client.classify(shape_id), _show_classes)


def _ask_about_active(
    operator: WorkerTask,
    context: bpy.types.Context,
    ask: Callable[[Client, str], list],
    show: Callable[[StoredShape, list], str],
) -> set[str]:
    """Find Similar and Classify: ``ask(client, shape_id)`` about the active neural object's shape on a
    worker (imported first if the service lacks it), then ``show`` the answer (main thread)."""
    try:
        stored = stored_shape(_active_neural(context))
    except LocalError as error:
        return report(operator, error)
    settings = connection_settings(context)

    def work() -> tuple[str, list]:
        client = workers.client(settings)
        shape_id = ensure_on_service(client, stored)
        return shape_id, ask(client, shape_id)

    def done(result: tuple[str, list]) -> str:
        shape_id, answer = result
        remember_ids([(stored, shape_id)])
        return show(stored, answer)

    return operator.start_task(work, done, pending=f"{operator.bl_label}: {stored.object_name} ...")


def _show_similar(stored: StoredShape, neighbours: list[SimilarShape]) -> str:
    panel = state()
    panel.similar.clear()
    for neighbour in neighbours:
        item = panel.similar.add()
        item.name, item.shape_id, item.distance = neighbour.name, neighbour.id, neighbour.distance
    panel.similar_to = stored.object_name
    return f"{len(neighbours)} shape(s) similar to {stored.object_name}"


def _show_classes(stored: StoredShape, classes: list[ClassProbability]) -> str:
    panel = state()
    panel.classes.clear()
    for found in classes:
        item = panel.classes.add()
        item.name, item.probability = found.class_name, found.probability
    panel.classes_of = stored.object_name
    return f"classified {stored.object_name}"
