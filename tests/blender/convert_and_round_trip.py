"""Run with the bpy module (a subprocess of tests/test_addon.py): install the extension, convert two
selected objects (one with a modifier) through the real service, save, reload, and report.

    python convert_and_round_trip.py ZIP DATA_DIR BLEND_PATH
Prints one JSON line.
"""

import json
import sys

import bpy

zip_path, data_dir, blend_path = sys.argv[1:4]
bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
package = "bl_ext.user_default.neural_shapes"
bpy.context.preferences.addons[package].preferences.data_dir = data_dir
operators = sys.modules[f"{package}.operators"]

bpy.ops.wm.read_homefile(use_empty=True)
bpy.ops.mesh.primitive_cube_add(size=2.0, location=(3.0, 0.0, 1.0), rotation=(0.3, 0.2, 0.1))
cube = bpy.context.active_object
cube.modifiers.new("bevel", "BEVEL").width = 0.2
bpy.ops.mesh.primitive_uv_sphere_add(radius=0.7, location=(-2.0, 1.0, 0.0))
sphere = bpy.context.active_object
for obj in (cube, sphere):
    obj.select_set(True)
scene = bpy.context.scene
scene.neural_shapes_target_error, scene.neural_shapes_resolution = 0.01, 64
report = {"nothing_selected": ""}
assert bpy.ops.neural.convert_selected() == {"FINISHED"}
job_id = bpy.context.window_manager.neural_shapes_job
settings = sys.modules[f"{package}.settings"].connection_settings(bpy.context)
while operators._poll_timer(job_id, settings) is not None:  # what the timer does in the UI
    pass
wm = bpy.context.window_manager
neural = [o for o in bpy.data.objects if "neural_shape_h5" in o]
report.update(
    stage=wm.neural_shapes_stage,
    progress=wm.neural_shapes_progress,
    objects=sorted(o.name for o in neural),
    matrix_error={
        o.name: max(abs(a - b) for ra, rb in zip(o.matrix_world, bpy.data.objects[o.name.replace(" (neural)", "")].matrix_world) for a, b in zip(ra, rb))
        for o in neural
    },
    sizes={o.name: len(bytes(o["neural_shape_h5"])) for o in neural},
    faces={o.name: len(o.data.polygons) for o in neural},
)
# Errors come back as reports, the scene unchanged: nothing selected.
bpy.ops.object.select_all(action="DESELECT")
count = len(bpy.data.objects)
try:
    bpy.ops.neural.convert_selected()
except RuntimeError as error:
    report["nothing_selected"] = str(error)
report["unchanged"] = len(bpy.data.objects) == count
bpy.ops.wm.save_as_mainfile(filepath=blend_path)
bpy.ops.wm.open_mainfile(filepath=blend_path)
report["after_reload"] = {o.name: len(bytes(o["neural_shape_h5"])) for o in bpy.data.objects if "neural_shape_h5" in o}
print(json.dumps(report))
