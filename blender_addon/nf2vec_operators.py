"""nf2vec operators: interpolate, generate and complete (service jobs followed by :mod:`.jobs`, the new
neural objects placed where each operator says), find similar library shapes and classify (answered at
once, the results listed in the panel), and add a library shape to the scene.

Inputs are checked and the job is started in ``execute``, so a refused request (no nf2vec model, a shape
of another family, a bad selection) is an error report and the scene stays as it was. Neural objects
the service has never seen are imported from their stored ``.h5`` bytes first.
"""

from __future__ import annotations

import bpy
from mathutils import Matrix

from . import jobs
from .client.client import Client, ServiceError
from .client.models import Job
from .connection import make_client
from .conversion import collect_meshes
from .neural_objects import FetchedShape, add_neural_object, ensure_on_service, fetch_shapes, is_neural
from .placement import between, centred_at, in_a_row
from .settings import connection_settings

ANY_CLASS = ("any", "Any", "Any class the generator makes")
# Blender keeps no reference to dynamic enum items: they must live here. Refreshed by the info request.
_class_items: list[tuple[str, str, str]] = [ANY_CLASS]


def _generate_classes(self, context: bpy.types.Context) -> list[tuple[str, str, str]]:
    return _class_items


def _refresh_info(context: bpy.types.Context, client: Client) -> None:
    """Ask for the nf2vec model: the panel's line and the Generate operator's classes."""
    info = client.nf2vec_info()
    _class_items[:] = [ANY_CLASS, *((name, name.capitalize(), f"a generated {name}") for name in info.classes)]
    missing = [task for task, available in info.tasks.items() if not available]
    context.window_manager.neural_shapes_nf2vec = info.model_id + (f" (no {', '.join(missing)})" if missing else "")


def _active_neural(context: bpy.types.Context) -> bpy.types.Object:
    obj = context.active_object
    if obj is None or not is_neural(obj):
        raise ServiceError(0, "make a neural object active")
    return obj


class NEURAL_OT_nf2vec_info(bpy.types.Operator):
    """Ask the service which nf2vec model it uses and what it can do"""

    bl_idname = "neural.nf2vec_info"
    bl_label = "Check nf2vec"

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            _refresh_info(context, make_client(connection_settings(context)))
        except ServiceError as error:
            context.window_manager.neural_shapes_nf2vec = error.detail
            self.report({"ERROR"}, error.detail)
            return {"CANCELLED"}
        return {"FINISHED"}


class NEURAL_OT_interpolate(bpy.types.Operator):
    """Make in-betweens of the two selected neural objects (from the other one to the active one), placed in a row between them"""

    bl_idname = "neural.interpolate"
    bl_label = "Interpolate"
    bl_options = {"REGISTER"}

    t: bpy.props.FloatProperty(name="t", description="Where the in-between lies: 0 is the first object, 1 the active one (when count is 1)",
                               default=0.5, min=0.0, max=1.0, subtype="FACTOR")
    count: bpy.props.IntProperty(name="Count", description="In-betweens, evenly spaced (1: the one at t)", default=1, min=1, max=32)
    space: bpy.props.EnumProperty(name="Space", items=[
        ("embedding", "Embedding", "Blend nf2vec embeddings, decode and fit (seconds per shape)"),
        ("weights", "Weights", "Blend the networks' weights directly (instant, unmeasured quality)"),
    ])

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not jobs.busy()

    def invoke(self, context: bpy.types.Context, event) -> set[str]:
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context: bpy.types.Context) -> set[str]:
        pair = [o for o in context.selected_objects if is_neural(o)]
        if len(pair) != 2:
            self.report({"ERROR"}, f"select exactly two neural objects ({len(pair)} selected)")
            return {"CANCELLED"}
        pair.sort(key=lambda o: (o == context.active_object, o.name))  # the active one last: t = 1
        settings = connection_settings(context)
        times, count = ([self.t], None) if self.count == 1 else (None, self.count)
        try:
            client = make_client(settings)
            a, b = (ensure_on_service(client, o) for o in pair)
            job = client.start_interpolate(a, b, times=times, count=count, space=self.space)
        except ServiceError as error:
            self.report({"ERROR"}, error.detail)
            return {"CANCELLED"}
        start, end = (o.matrix_world.copy() for o in pair)  # copies: the objects may change or go meanwhile

        def place(job: Job, shapes: list[FetchedShape]) -> list[Matrix]:
            return between(start, end, job.inputs["times"])

        jobs.start(context, settings, jobs.TrackedJob(place, context.scene.neural_shapes_resolution, verb="interpolated", job_id=job.id))
        return {"FINISHED"}


class NEURAL_OT_generate(bpy.types.Operator):
    """Make new shapes with the nf2vec generator, placed in a row at the 3D cursor"""

    bl_idname = "neural.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER"}

    count: bpy.props.IntProperty(name="Count", default=1, min=1, max=32)
    seed: bpy.props.IntProperty(name="Seed", description="The same seed makes the same shapes", default=0, min=0)
    class_name: bpy.props.EnumProperty(name="Class", description="What to make (the classes come from Check nf2vec)", items=_generate_classes)

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not jobs.busy()

    def invoke(self, context: bpy.types.Context, event) -> set[str]:
        try:
            _refresh_info(context, make_client(connection_settings(context)))
        except ServiceError as error:
            self.report({"ERROR"}, error.detail)
            return {"CANCELLED"}
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = connection_settings(context)
        try:
            class_name = None if self.class_name == ANY_CLASS[0] else self.class_name
            job = make_client(settings).start_generate(self.count, seed=self.seed, class_name=class_name)
        except ServiceError as error:
            self.report({"ERROR"}, error.detail)
            return {"CANCELLED"}
        cursor = context.scene.cursor.location.copy()

        def place(job: Job, shapes: list[FetchedShape]) -> list[Matrix]:
            return in_a_row(cursor, [s.centre for s in shapes], [s.size for s in shapes])

        jobs.start(context, settings, jobs.TrackedJob(place, context.scene.neural_shapes_resolution, verb="generated", job_id=job.id))
        return {"FINISHED"}


class NEURAL_OT_complete(bpy.types.Operator):
    """Complete the active object (a neural object, or a mesh that is fitted first) with nf2vec; the whole shape is placed over it"""

    bl_idname = "neural.complete"
    bl_label = "Complete"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not jobs.busy()

    def execute(self, context: bpy.types.Context) -> set[str]:
        obj = context.active_object
        if obj is None or obj.type != "MESH":
            self.report({"ERROR"}, "make a mesh or neural object active")
            return {"CANCELLED"}
        settings = connection_settings(context)
        matrix = obj.matrix_world.copy()

        def place(job: Job, shapes: list[FetchedShape]) -> list[Matrix]:
            return [matrix.copy() for _ in shapes]  # the completed shape lies in the partial's frame

        tracked = jobs.TrackedJob(place, context.scene.neural_shapes_resolution, verb="completed")
        try:
            client = make_client(settings)
            if is_neural(obj):
                tracked.job_id = client.start_complete(shape_id=ensure_on_service(client, obj)).id
                jobs.start(context, settings, tracked)
                return {"FINISHED"}
            [mesh] = collect_meshes([obj], context.evaluated_depsgraph_get())
            if not client.nf2vec_info().tasks.get("complete"):  # refuse now rather than after the upload
                raise ServiceError(0, "the service's nf2vec model cannot complete shapes (it has no transfer network)")
        except ServiceError as error:
            self.report({"ERROR"}, error.detail)
            return {"CANCELLED"}
        # The upload can take a while for a big mesh: the worker thread sends it and starts the job.
        jobs.start(context, settings, tracked,
                   lambda: client.start_complete(upload_id=client.upload_mesh(mesh.vertices, mesh.faces, name=mesh.name).id).id)
        return {"FINISHED"}


class NEURAL_OT_find_similar(bpy.types.Operator):
    """List the library shapes nearest to the active neural object in nf2vec embedding space"""

    bl_idname = "neural.find_similar"
    bl_label = "Find Similar"

    k: bpy.props.IntProperty(name="Shapes", description="How many to list", default=5, min=1, max=100)

    def invoke(self, context: bpy.types.Context, event) -> set[str]:
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            obj = _active_neural(context)
            client = make_client(connection_settings(context))
            neighbours = client.similar(ensure_on_service(client, obj), k=self.k)
        except ServiceError as error:
            self.report({"ERROR"}, error.detail)
            return {"CANCELLED"}
        wm = context.window_manager
        wm.neural_shapes_similar.clear()
        for neighbour in neighbours:
            item = wm.neural_shapes_similar.add()
            item.name, item.shape_id, item.distance = neighbour.name, neighbour.id, neighbour.distance
        wm.neural_shapes_similar_to = obj.name
        self.report({"INFO"}, f"{len(neighbours)} similar shape(s)")
        return {"FINISHED"}


class NEURAL_OT_add_library_shape(bpy.types.Operator):
    """Add this library shape to the scene as a neural object at the 3D cursor"""

    bl_idname = "neural.add_library_shape"
    bl_label = "Add Library Shape"
    bl_options = {"REGISTER", "UNDO"}

    shape_id: bpy.props.StringProperty(name="Shape id")

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            [shape] = fetch_shapes(make_client(connection_settings(context)), [self.shape_id], context.scene.neural_shapes_resolution)
        except ServiceError as error:
            self.report({"ERROR"}, error.detail)
            return {"CANCELLED"}
        obj = add_neural_object(shape, context.scene.collection, centred_at(context.scene.cursor.location, shape.centre))
        for other in context.selected_objects:
            other.select_set(False)
        obj.select_set(True)
        context.view_layer.objects.active = obj
        return {"FINISHED"}


class NEURAL_OT_classify(bpy.types.Operator):
    """Show which classes the active neural object looks like to the nf2vec classifier"""

    bl_idname = "neural.classify"
    bl_label = "Classify"

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            obj = _active_neural(context)
            client = make_client(connection_settings(context))
            classes = client.classify(ensure_on_service(client, obj))
        except ServiceError as error:
            self.report({"ERROR"}, error.detail)
            return {"CANCELLED"}
        wm = context.window_manager
        wm.neural_shapes_classes.clear()
        for found in classes:
            item = wm.neural_shapes_classes.add()
            item.name, item.probability = found.class_name, found.probability
        wm.neural_shapes_classes_of = obj.name
        return {"FINISHED"}

