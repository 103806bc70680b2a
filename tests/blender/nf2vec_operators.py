"""Run with the bpy module (a subprocess of tests/test_addon_nf2vec.py): the nf2vec operators against a real
service with the tiny test toolkit: add library shapes, interpolate, generate, complete (a neural object
and a plain mesh), cancel, find similar, classify, and the error reports that leave the scene unchanged.

    python nf2vec_operators.py ZIP DATA_DIR IDS_JSON NO_MODEL_DATA_DIR
(IDS_JSON: {"sphere": id, ..., "foreign": id of a shape of another family}; NO_MODEL_DATA_DIR: a
service without an nf2vec model.) Prints one JSON line.
"""

import json
import sys

import bpy
from mathutils import Vector

zip_path, data_dir, ids_json, no_model_data_dir = sys.argv[1:5]
ids = json.loads(ids_json)
package = "bl_ext.user_default.neural_shapes"
bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
prefs = bpy.context.preferences.addons[package].preferences
prefs.data_dir = data_dir
tasks = sys.modules[f"{package}.background.workers"]
bpy.ops.wm.read_homefile(use_empty=True)
scene, wm = bpy.context.scene, bpy.context.window_manager
scene.neural_shapes.resolution = 32


def press(operator, **options) -> str:
    """Press a button and tick the add-on's tasks until its work is over (what the timer does in the UI)."""
    try:
        pressed = sorted(operator(**options))[0]
    except RuntimeError as error:  # an ERROR report raises when called from a script
        return f"error: {error}".strip()
    tasks.finish()
    return pressed


def run_job(operator, **options) -> dict:
    """Press a job operator, wait for the job and report the objects it made."""
    before = set(bpy.data.objects)
    pressed = press(operator, **options)
    made = sorted(set(bpy.data.objects) - before, key=lambda o: o.name)
    return {
        "pressed": pressed,
        "stage": wm.neural_shapes.stage,
        "objects": [o.name for o in made],
        "locations": [list(o.matrix_world.translation) for o in made],
    }


def select(*objects, active=None) -> None:
    for obj in bpy.data.objects:
        obj.select_set(obj in objects)
    bpy.context.view_layer.objects.active = active or (objects[-1] if objects else None)


def add_library_shape(name: str, location) -> bpy.types.Object:
    scene.cursor.location = location
    assert press(bpy.ops.neural.add_library_shape, shape_id=ids[name]) == "FINISHED"
    return bpy.context.active_object


def proxy_centre(obj) -> list[float]:
    corners = [obj.matrix_world @ Vector(corner) for corner in obj.bound_box]
    return list(sum(corners, Vector()) / 8)


report = {"info": press(bpy.ops.neural.nf2vec_info), "nf2vec_line": wm.neural_shapes.nf2vec}
sphere = add_library_shape("sphere", (-3.0, 0.0, 0.0))
cube = add_library_shape("cube", (3.0, 0.0, 1.0))
report["added"] = {
    "names": [sphere.name, cube.name],
    "sphere_centre": proxy_centre(sphere),
    "cube_centre": proxy_centre(cube),
    "ids": [sphere.neural_shapes.shape["neural_shape_id"], cube.neural_shapes.shape["neural_shape_id"]],
}

select(sphere, cube, active=cube)
report["interpolate_weights"] = run_job(bpy.ops.neural.interpolate, count=3, space="weights")
report["interpolate_embedding"] = run_job(bpy.ops.neural.interpolate, t=0.3)
report["sphere_location"], report["cube_location"] = list(sphere.location), list(cube.location)

scene.cursor.location = (0.0, 5.0, 0.0)
report["generate"] = run_job(bpy.ops.neural.generate, count=2, seed=1, class_name="round")

cone = add_library_shape("cone", (0.0, -5.0, 0.0))
select(cone)
report["complete_neural"] = run_job(bpy.ops.neural.complete)
report["cone_matrix"] = [list(row) for row in cone.matrix_world]

bpy.ops.mesh.primitive_uv_sphere_add(radius=0.8, location=(4.0, -5.0, 0.0))
plain = bpy.context.active_object
select(plain)
report["complete_mesh"] = run_job(bpy.ops.neural.complete)
report["plain_matrix"] = [list(row) for row in plain.matrix_world]
completed = [bpy.data.objects[name] for name in report["complete_mesh"]["objects"]]
report["completed_matrix"] = [list(row) for row in completed[0].matrix_world] if completed else []

# Cancel right after the start: the job is queued or running, and nothing is added.
count = len(bpy.data.objects)
assert bpy.ops.neural.generate(count=32) == {"FINISHED"}
report["cancel"] = press(bpy.ops.neural.cancel)
report["cancelled_stage"], report["cancel_unchanged"] = wm.neural_shapes.stage, len(bpy.data.objects) == count

select(sphere)
report["similar"] = press(bpy.ops.neural.find_similar, k=3)
report["similar_line"] = wm.neural_shapes.message
report["similar_rows"] = [(item.name, item.distance, item.shape_id) for item in wm.neural_shapes.similar]
report["similar_to"] = wm.neural_shapes.similar_to
select(cube)
report["classify"] = press(bpy.ops.neural.classify)
report["classes"] = [(item.name, item.probability) for item in wm.neural_shapes.classes]

# Errors: reports with the service's line, the scene as it was.
count = len(bpy.data.objects)
select(sphere)
report["one_selected"] = press(bpy.ops.neural.interpolate)
select(plain)
report["classify_plain"] = press(bpy.ops.neural.classify)
foreign = add_library_shape("foreign", (0.0, 0.0, -5.0))
count += 1
select(sphere, foreign, active=foreign)
report["foreign"] = run_job(bpy.ops.neural.interpolate)["stage"]  # the service refuses: the job fails with its line
prefs.data_dir = no_model_data_dir
report["no_model_info"] = press(bpy.ops.neural.nf2vec_info)
report["no_model_line"] = wm.neural_shapes.nf2vec
report["no_model_generate"] = run_job(bpy.ops.neural.generate)["stage"]
select(plain)
report["no_model_complete"] = run_job(bpy.ops.neural.complete)["stage"]
report["unchanged"] = len(bpy.data.objects) == count
print(json.dumps(report))
