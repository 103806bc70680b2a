"""Pictures of neural objects in a Blender scene for docs/ (issue 18), with the bpy module:

    python bench/blender/scene_pictures.py ZIP DATA_DIR OUT_DIR SHAPE.h5...

Imports each shape into the running service (DATA_DIR), adds it as a neural object with a material of its
own on a floor, lit by a sun, and renders the scene with Cycles twice: the proxies at 32^3 (what a final
render showed before render resolutions) and at each object's render resolution (256^3). Writes
OUT_DIR/final_render.png (the two one above the other) and prints the render-time line of the add-on.
"""

import sys
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

zip_path, data_dir, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
shapes = [Path(p) for p in sys.argv[4:]]
bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
package = "bl_ext.user_default.neural_shapes"
bpy.context.preferences.addons[package].preferences.data_dir = data_dir
neural_objects = sys.modules[f"{package}.scene.neural_objects"]
workers = sys.modules[f"{package}.background.workers"]
settings = sys.modules[f"{package}.settings"]

bpy.ops.wm.read_homefile(use_empty=True)
scene = bpy.context.scene
client = workers.client(settings.connection_settings(bpy.context))
COLOURS = [(0.1, 0.3, 0.9, 1), (0.85, 0.35, 0.1, 1), (0.2, 0.7, 0.3, 1)]
for index, path in enumerate(shapes):
    shape_id = client.import_shape(path.read_bytes(), name=path.stem).id
    [fetched] = neural_objects.fetch_shapes(client, [shape_id], 32)
    size = fetched.size
    place = Matrix.Translation((2.4 * (index - (len(shapes) - 1) / 2), 0, 0)) @ Matrix.Scale(2 / size, 4)
    obj = neural_objects.add_neural_object(
        fetched, scene.collection, place @ Matrix.Translation([-c for c in fetched.centre]), 256
    )
    material = bpy.data.materials.new(path.stem)
    material.use_nodes = True
    material.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = COLOURS[index % len(COLOURS)]
    obj.data.materials.append(material)
bpy.ops.mesh.primitive_plane_add(size=30, location=(0, 0, -1.0))
camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
scene.collection.objects.link(camera)
camera.location, camera.rotation_euler = (0.0, -7.0, 2.6), (1.22, 0.0, 0.0)
scene.camera = camera
sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
scene.collection.objects.link(sun)
sun.rotation_euler, sun.data.energy = (0.7, 0.2, 0.6), 3.0
scene.world = bpy.data.worlds.new("World")
scene.world.color = (0.35, 0.35, 0.4)
scene.render.engine, scene.cycles.samples = "CYCLES", 48
scene.render.resolution_x, scene.render.resolution_y = 720, 300
rows = []
for name, resolution in (("proxy", 32), ("render", 256)):
    for obj in scene.objects:
        if obj.type == "MESH" and obj.neural_shapes.shape is not None:
            obj.neural_shapes.render_resolution = resolution
    scene.render.filepath = str(out / f"final_render_{name}.png")
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(scene.render.filepath)
    pixels = np.empty(image.size[0] * image.size[1] * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    rows.append(pixels.reshape(image.size[1], image.size[0], 4))
sheet = bpy.data.images.new("sheet", rows[0].shape[1], 2 * rows[0].shape[0])
sheet.pixels.foreach_set(np.concatenate([rows[1], rows[0]]).ravel())  # bottom row first: the proxies below
sheet.filepath_raw, sheet.file_format = str(out / "final_render.png"), "PNG"
sheet.save()
