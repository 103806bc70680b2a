"""Run with the bpy module: convert's error reports (nothing usable selected, an empty mesh) leave the
scene unchanged, and a cancelled conversion creates nothing.

    python convert_errors_and_cancel.py ZIP DATA_DIR
Prints one JSON line.
"""

import json
import sys

import bpy

zip_path, data_dir = sys.argv[1:3]
package = "bl_ext.user_default.neural_shapes"
bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
bpy.context.preferences.addons[package].preferences.data_dir = data_dir
tasks = sys.modules[f"{package}.background.workers"]
bpy.ops.wm.read_homefile(use_empty=True)


def press(operator, **options) -> str:
    try:
        return sorted(operator(**options))[0]
    except RuntimeError as error:
        return f"error: {error}".strip()


def only_selected(*objects) -> None:
    for obj in bpy.data.objects:
        obj.select_set(obj in objects)


report = {}
empty = bpy.data.objects.new("Empty", None)
bpy.context.scene.collection.objects.link(empty)
only_selected(empty)
count = len(bpy.data.objects)
report["non_mesh"] = press(bpy.ops.neural.convert_selected)
flat = bpy.data.objects.new("NoFaces", bpy.data.meshes.new("NoFaces"))
flat.data.vertices.add(3)
bpy.context.scene.collection.objects.link(flat)
only_selected(flat)
count += 1
report["empty_mesh"] = press(bpy.ops.neural.convert_selected)
report["unchanged"] = len(bpy.data.objects) == count

bpy.ops.mesh.primitive_monkey_add()
only_selected(bpy.context.active_object)
bpy.context.scene.neural_shapes.target_error = 0.0005  # runs long enough to cancel
report["started"] = press(bpy.ops.neural.convert_selected)
report["cancel"] = press(bpy.ops.neural.cancel)
tasks.finish()
report["stage"] = bpy.context.window_manager.neural_shapes.stage
report["neural_objects"] = sum(o.neural_shapes.shape is not None for o in bpy.data.objects)
print(json.dumps(report))
