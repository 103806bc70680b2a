"""Run by Debian's Blender 3.4 (``blender -b --python THIS -- ZIP DATA_DIR SHAPE_ID BLEND``): install and enable
the legacy add-on for good (user preferences saved in BLENDER_USER_CONFIG), then save a scene with one neural
object of the service's shape SHAPE_ID (proxy 16^3, render resolution 256), a camera and a light, frames 1-3,
for ``blender -b BLEND -f 1`` and ``-a`` to render. Prints one JSON line.
"""

import json
import sys

import bpy
from mathutils import Matrix

zip_path, data_dir, shape_id, blend = sys.argv[sys.argv.index("--") + 1 :]
bpy.ops.preferences.addon_install(filepath=zip_path)
bpy.ops.preferences.addon_enable(module="neural_shapes")
bpy.context.preferences.addons["neural_shapes"].preferences.data_dir = data_dir
bpy.ops.wm.save_userpref()

from neural_shapes.background import workers  # noqa: E402  (the add-on, once installed)
from neural_shapes.scene.neural_objects import add_neural_object, fetch_shapes  # noqa: E402
from neural_shapes.settings import connection_settings  # noqa: E402

bpy.ops.wm.read_homefile(use_empty=True)
scene = bpy.context.scene
[shape] = fetch_shapes(workers.client(connection_settings(bpy.context)), [shape_id], 16)
obj = add_neural_object(shape, scene.collection, Matrix.Identity(4), render_resolution=256)
camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
scene.collection.objects.link(camera)
camera.location = (shape.centre[0], shape.centre[1] - 3 * shape.size, shape.centre[2])
camera.rotation_euler = (1.5708, 0.0, 0.0)
scene.camera = camera
scene.render.engine = "BLENDER_WORKBENCH"
scene.render.resolution_x = scene.render.resolution_y = 64
scene.render.film_transparent = True
scene.frame_start, scene.frame_end = 1, 3
scene.render.filepath = "//frame_###"
bpy.ops.wm.save_as_mainfile(filepath=blend)
print(json.dumps({"faces": len(obj.data.polygons), "render_resolution": obj.neural_shapes.render_resolution}))
