"""Run with the bpy module (a subprocess of tests/test_viewport_engine.py): install the extension, check the
Neural Shapes render engine is registered, check the viewport camera math against Blender's own camera
projection (calc_matrix_camera), trace frames as the viewport's worker does (timed at 256 and 512 pixels,
coarse and full), compare a viewport frame taken through a camera's matrices with F12's image of that camera.

    python viewport_engine.py ZIP DATA_DIR SHAPE_ID OUT_DIR
Prints one JSON line.
"""

import json
import statistics
import sys
import time
from pathlib import Path

import bpy
import numpy as np

zip_path, data_dir, shape_id, out_dir = sys.argv[1:5]
out_dir = Path(out_dir)
bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
package = "bl_ext.user_default.neural_shapes"
bpy.context.preferences.addons[package].preferences.data_dir = data_dir
tasks = sys.modules[f"{package}.background.workers"]
engine = sys.modules[f"{package}.viewport.engine"]
camera_math = sys.modules[f"{package}.viewport.camera"]
settings = sys.modules[f"{package}.settings"].connection_settings(bpy.context)
report = {}

scene = bpy.context.scene
report["engines"] = [
    e.bl_idname for e in bpy.types.RenderEngine.__subclasses__() if getattr(e, "bl_idname", "") == "NEURAL_SHAPES"
]
scene.render.engine = "NEURAL_SHAPES"
report["scene_engine"] = scene.render.engine

bpy.ops.wm.read_homefile(use_empty=True)
scene = bpy.context.scene
scene.render.engine = "NEURAL_SHAPES"
scene.cursor.location = (0.0, 0.0, 0.0)
assert bpy.ops.neural.add_library_shape(shape_id=shape_id) == {"FINISHED"}
tasks.finish()
[neural] = [o for o in scene.objects if o.type == "MESH"]
neural.scale = (2.0, 2.0, 2.0)
camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
scene.collection.objects.link(camera)
camera.location = (0.0, -4.0, 1.2)
camera.rotation_euler = (1.28, 0.0, 0.0)
scene.camera = camera
depsgraph = bpy.context.evaluated_depsgraph_get()
depsgraph.update()


def rows(matrix):
    return [list(row) for row in matrix]


# Blender's camera projection -> our camera: the same lens / ortho scale / clip range, pixels that land right.
checks = []
for kind, lens, shift, width, height in [
    ("PERSP", 35.0, (0.0, 0.0), 320, 200),
    ("PERSP", 50.0, (0.0, 0.0), 200, 320),
    ("PERSP", 50.0, (0.2, -0.1), 320, 240),
    ("ORTHO", 50.0, (0.0, 0.0), 300, 200),
]:
    camera.data.type, camera.data.lens = kind, lens
    camera.data.sensor_width, camera.data.sensor_fit, camera.data.ortho_scale = 36.0, "AUTO", 5.0
    camera.data.shift_x, camera.data.shift_y = shift
    camera.data.clip_start, camera.data.clip_end = 0.05, 80.0
    depsgraph.update()
    window = camera.calc_matrix_camera(depsgraph, x=width, y=height)
    view = camera.matrix_world.inverted()
    frame = camera_math.view_frame(rows(view), rows(window), width, height)
    fitted = max(width, height)
    checks.append(
        {
            "kind": kind,
            "shift": list(shift),
            "size": [frame.width, frame.height],
            "expected_size": [width, height],
            "lens": frame.camera["lens"] if kind == "PERSP" else None,
            "expected_lens": lens * fitted / width if kind == "PERSP" else None,
            "ortho_scale": frame.camera["ortho_scale"] if kind == "ORTHO" else None,
            "expected_ortho_scale": 5.0 * width / fitted if kind == "ORTHO" else None,
            "clip": [frame.camera["clip_start"], frame.camera["clip_end"]],
            "depth_offset": frame.depth_offset,
            "ndc_rect": list(frame.ndc_rect),
        }
    )
report["camera_checks"] = checks

# A viewport frame through the camera's own matrices against F12's image of the camera (same pixels).
camera.data.type, camera.data.lens, camera.data.shift_x, camera.data.shift_y = "PERSP", 50.0, 0.0, 0.0
scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 160, 120, 100
scene.render.image_settings.file_format, scene.render.image_settings.color_mode = "PNG", "RGBA"
depsgraph.update()
bpy.ops.render.render()
bpy.data.images["Render Result"].save_render(filepath=str(out_dir / "f12.png"))
f12 = bpy.data.images.load(str(out_dir / "f12.png"))
f12_pixels = np.empty(160 * 120 * 4, np.float32)
f12.pixels.foreach_get(f12_pixels)
f12_alpha = f12_pixels.reshape(120, 160, 4)[..., 3] > 0.5
window = camera.calc_matrix_camera(depsgraph, x=160, y=120)
frame = camera_math.view_frame(rows(camera.matrix_world.inverted()), rows(window), 160, 120)
scene_read = engine.neural_scene(depsgraph)
traced = engine.trace_frame(engine.FrameRequest("full", frame, scene_read, settings))
traced_alpha = traced.rgba[..., 3] > 0.5
hit_depth = traced.depth[traced_alpha]
report["f12"] = {
    "coverage": float(f12_alpha.mean()),
    "viewport_coverage": float(traced_alpha.mean()),
    "disagree": float((f12_alpha != traced_alpha).mean()),
    "depth_range": [float(hit_depth.min()), float(hit_depth.max())] if hit_depth.size else [],
    "miss_depth": float(traced.depth[~traced_alpha].min()) if (~traced_alpha).any() else None,
    "objects": len(scene_read.shapes),
}

# The worker's frame time at a 256 x 256 and a 512 x 512 region: coarse (1/4 resolution) and full.
times = {}
for side in (256, 512):
    window = camera.calc_matrix_camera(depsgraph, x=side, y=side)
    for level, scale in (("coarse", engine.COARSE_SCALE), ("full", 1.0)):
        frame = camera_math.view_frame(rows(camera.matrix_world.inverted()), rows(window), side, side, scale=scale)
        request = engine.FrameRequest(level, frame, scene_read, settings)
        engine.trace_frame(request)  # warm: the first call compiles nothing on the service, but connects
        seconds = []
        for _ in range(5):
            started = time.perf_counter()
            engine.trace_frame(request)
            seconds.append(time.perf_counter() - started)
        times[f"{side}_{level}"] = {"pixels": [frame.width, frame.height], "median": statistics.median(seconds)}
report["frame_times"] = times
print(json.dumps(report))
