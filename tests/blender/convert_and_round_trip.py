"""Run with the bpy module (a subprocess of tests/test_addon.py): install the extension, convert two
selected objects (one with a modifier) through the real service, save, reload, and report.

    python convert_and_round_trip.py ZIP DATA_DIR BLEND_PATH OTHER_DATA_DIR
(OTHER_DATA_DIR: a second service that has never seen the shapes)
Prints one JSON line.
"""

import json
import sys

import bpy

zip_path, data_dir, blend_path, other_data_dir = sys.argv[1:5]
bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
package = "bl_ext.user_default.neural_shapes"
bpy.context.preferences.addons[package].preferences.data_dir = data_dir
tasks = sys.modules[f"{package}.background.workers"]

bpy.ops.wm.read_homefile(use_empty=True)
bpy.ops.mesh.primitive_cube_add(size=2.0, location=(3.0, 0.0, 1.0), rotation=(0.3, 0.2, 0.1))
cube = bpy.context.active_object
cube.modifiers.new("bevel", "BEVEL").width = 0.2
bpy.ops.mesh.primitive_uv_sphere_add(radius=0.7, location=(-2.0, 1.0, 0.0))
sphere = bpy.context.active_object
for obj in (cube, sphere):
    obj.select_set(True)
scene = bpy.context.scene
scene.neural_shapes.target_error, scene.neural_shapes.resolution = 0.01, 64
report = {"nothing_selected": ""}
assert bpy.ops.neural.convert_selected() == {"FINISHED"}
tasks.finish()  # what the timer does in the UI
wm = bpy.context.window_manager
neural = [o for o in bpy.data.objects if o.neural_shapes.shape is not None]
report.update(
    stage=wm.neural_shapes.stage,
    progress=wm.neural_shapes.progress,
    objects=sorted(o.name for o in neural),
    matrix_error={
        o.name: max(
            abs(a - b)
            for ra, rb in zip(o.matrix_world, bpy.data.objects[o.name.replace(" (neural)", "")].matrix_world)
            for a, b in zip(ra, rb)
        )
        for o in neural
    },
    sizes={o.name: len(bytes(o.neural_shapes.shape["neural_shape_h5"])) for o in neural},
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
report["after_reload"] = {
    o.name: len(bytes(o.neural_shapes.shape["neural_shape_h5"])) for o in bpy.data.objects if o.neural_shapes.shape
}

# Re-extract on a service that has never seen the shapes: they are re-imported from the stored bytes.
bpy.context.preferences.addons[package].preferences.data_dir = other_data_dir
cube = bpy.data.objects["Cube (neural)"]
old_id, old_faces = cube.neural_shapes.shape["neural_shape_id"], len(cube.data.polygons)
bpy.ops.object.select_all(action="DESELECT")
cube.select_set(True)
cube.neural_shapes.viewport_resolution = 40
assert bpy.ops.neural.re_extract(method="dense") == {"FINISHED"}
tasks.finish()
report["re_extract"] = {
    "new_id": cube.neural_shapes.shape["neural_shape_id"] != old_id,
    "faces_before": old_faces,
    "faces_after": len(cube.data.polygons),
}

# Preview from the scene camera, the cube subtracted from nothing else: just check both silhouettes appear.
camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
bpy.context.scene.collection.objects.link(camera)
camera.location = (0.5, -12.0, 3.0)
camera.rotation_euler = (1.35, 0.0, 0.0)
bpy.context.scene.camera = camera
bpy.context.scene.render.resolution_x, bpy.context.scene.render.resolution_y = 320, 200
bpy.context.scene.render.resolution_percentage = 50
assert bpy.ops.neural.render_preview() == {"FINISHED"}
tasks.finish()
report["preview_line"] = bpy.context.window_manager.neural_shapes.message
image = bpy.data.images["Neural Preview"]
import numpy as np  # noqa: E402

pixels = np.empty(image.size[0] * image.size[1] * 4, dtype=np.float32)
image.pixels.foreach_get(pixels)
alpha = pixels.reshape(image.size[1], image.size[0], 4)[..., 3]
report["preview"] = {
    "size": list(image.size),
    "coverage": float((alpha > 0.5).mean()),
    "left_half": float((alpha[:, :80] > 0.5).mean()),
    "right_half": float((alpha[:, 80:] > 0.5).mean()),
}

# Append the neural object into another file: the shape travels with it.
bpy.ops.wm.save_mainfile()
bpy.ops.wm.read_homefile(use_empty=True)
bpy.ops.wm.append(directory=blend_path + "/Object/", filename="Sphere (neural)")
appended = bpy.data.objects.get("Sphere (neural)")
report["appended"] = len(bytes(appended.neural_shapes.shape["neural_shape_h5"])) if appended is not None else 0
bpy.ops.wm.link(directory=blend_path + "/Object/", filename="Cube (neural)")
linked = bpy.data.objects.get(("Cube (neural)", blend_path))
report["linked"] = len(bytes(linked.neural_shapes.shape["neural_shape_h5"])) if linked is not None else 0
print(json.dumps(report))
