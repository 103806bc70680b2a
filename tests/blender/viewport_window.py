"""Run in a Blender window (Debian's blender 3.4 under Xvfb; tests/test_viewport_engine.py): install the legacy
add-on, add a library shape as a neural object next to an ordinary cube that cuts into it, switch the 3D
viewport (its size follows the window's) to Rendered shading with the Neural Shapes engine, orbit it for a
while (coarse frames), hold it still (the full frame), take a screenshot of the viewport and quit. Everything
runs from timers, as a user's session would.

    blender --factory-startup -p 0 0 W H --python viewport_window.py -- ZIP DATA_DIR SHAPE_ID SCREENSHOT
        [--region WxH] [--scale S] [--carve SHAPE_ID] [--view PERSP|ORTHO|CAMERA]
Prints one line ``VIEWPORT_REPORT {json}`` before quitting. --region: the viewport region's size, made by
moving the 3D view's edges; --scale: the neural object's (default 2); --carve: a second library shape
subtracted from the first (CSG difference); --view: the viewport's projection (CAMERA: through a scene camera
with lens shift, the frame zoomed and panned: an off-centre frustum; it does not orbit).
"""

import argparse
import json
import sys
import time
import traceback

import bpy
from mathutils import Euler, Vector

parser = argparse.ArgumentParser()
for name in ("zip_path", "data_dir", "shape_id", "screenshot"):
    parser.add_argument(name)
parser.add_argument("--region", type=lambda text: [int(v) for v in text.split("x")])
parser.add_argument("--scale", type=float, default=2.0)
parser.add_argument("--carve", default="")
parser.add_argument("--view", choices=["PERSP", "ORTHO", "CAMERA"], default="PERSP")
options = parser.parse_args(sys.argv[sys.argv.index("--") + 1 :])
zip_path, data_dir, shape_id, screenshot = options.zip_path, options.data_dir, options.shape_id, options.screenshot
region_size, scale, carve = options.region, options.scale, options.carve
bpy.context.preferences.view.show_splash = False  # a first start's Quick Setup would cover the viewport
bpy.ops.preferences.addon_install(filepath=zip_path)
bpy.ops.preferences.addon_enable(module="neural_shapes")
bpy.context.preferences.addons["neural_shapes"].preferences.data_dir = data_dir
tasks = sys.modules["neural_shapes.background.workers"]
engine = sys.modules["neural_shapes.viewport.engine"]
report = {"events": []}


def view3d():
    window = bpy.context.window_manager.windows[0]
    area = next(a for a in window.screen.areas if a.type == "VIEW_3D")
    region = next(r for r in area.regions if r.type == "WINDOW")
    return window, area, region


def setup():
    scene = bpy.context.scene
    for name in ("Camera", "Light"):
        if name in bpy.data.objects:
            bpy.data.objects.remove(bpy.data.objects[name])
    cube = bpy.data.objects["Cube"]  # ordinary geometry, cutting into the neural shape
    cube.location, cube.scale, cube.rotation_euler = (0.75, -0.3, -0.5), (0.38, 0.38, 0.38), (0.0, 0.0, 0.5)
    cube.color = (0.45, 0.65, 1.0, 1.0)
    neural = add_neural(shape_id, scale, (0.0, 0.0, 0.0))
    if carve:
        bite = add_neural(carve, 0.9 * scale, (-0.3 * scale, -0.35 * scale, 0.3 * scale))
        bite.neural_shapes.operation = "difference"
    neural.select_set(False)
    cube.select_set(False)
    scene.render.engine = "NEURAL_SHAPES"
    window, area, region = view3d()
    space = area.spaces.active
    space.shading.type = "RENDERED"
    space.overlay.show_floor = True
    rv3d = space.region_3d
    rv3d.view_location = (0.0, 0.0, 0.0)
    rv3d.view_distance = 3.6
    if options.view == "CAMERA":
        camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
        scene.collection.objects.link(camera)
        camera.location, camera.rotation_euler = (3.5, -3.5, 2.5), (1.1, 0.0, 0.785)
        camera.data.shift_x = 0.15
        scene.camera = camera
        rv3d.view_perspective = "CAMERA"
        rv3d.view_camera_zoom, rv3d.view_camera_offset = 10.0, (0.1, -0.05)
    else:
        rv3d.view_perspective = options.view
        orbit(0)
    report["engine"] = scene.render.engine


def add_neural(library_id, size, centre):
    """A library shape as a neural object, scaled by ``size`` about its middle, its middle at ``centre``."""
    before = set(bpy.data.objects)
    assert bpy.ops.neural.add_library_shape(shape_id=library_id) == {"FINISHED"}
    tasks.finish()
    [obj] = set(bpy.data.objects) - before
    obj.scale = (size, size, size)
    bpy.context.view_layer.update()
    middle = obj.matrix_world @ (sum((Vector(c) for c in obj.bound_box), Vector()) / 8)
    obj.location += Vector(centre) - middle
    obj.select_set(False)
    return obj


def fit_region():
    """One step towards a ``region_size`` region: move the 3D view's right and bottom edges (sizes change at the
    next redraw, so this runs on several ticks; screen_full_area crashes Blender 3.4 when run from a timer, and
    a window is at least 640 x 480)."""
    window, area, region = view3d()
    dx, dy = region.width - region_size[0], region.height - region_size[1]
    with bpy.context.temp_override(window=window, area=area, region=region):
        if dx:  # the right edge, left by dx (two moves: a small one alone is not taken)
            x, y = area.x + area.width, area.y + area.height // 2
            bpy.ops.screen.area_move(x=x, y=y, delta=-dx - 100)
            bpy.ops.screen.area_move(x=x - dx - 100, y=y, delta=100)
        if dy:  # the bottom edge, up by dy
            x, y = area.x + area.width // 4, area.y - 1
            bpy.ops.screen.area_move(x=x, y=y, delta=dy + 100)
            bpy.ops.screen.area_move(x=x, y=y + dy + 100, delta=-100)


def record_region():
    region = view3d()[2]
    report["region"] = [region.width, region.height]


def orbit(step):
    _, area, region = view3d()
    if options.view == "CAMERA":
        return
    area.spaces.active.region_3d.view_rotation = Euler((1.15, 0.0, 0.2 + 0.015 * step)).to_quaternion()
    region.tag_redraw()


def shoot():
    window, area, region = view3d()
    with bpy.context.temp_override(window=window, area=area, region=region):
        bpy.ops.screen.screenshot_area(filepath=screenshot)


schedule = []  # (seconds after the previous action, action): one action a tick, the window redraws in between
due = [time.monotonic()]


def tick():
    try:
        if schedule and time.monotonic() >= due[0] + schedule[0][0]:
            _, action = schedule.pop(0)
            action()
            due[0] = time.monotonic()
        if schedule:
            return 0.02
    except Exception:  # noqa: BLE001 (report anything, then quit: the test reads the log)
        report["error"] = traceback.format_exc()
    report["frames"] = list(engine.frame_times)
    print("VIEWPORT_REPORT " + json.dumps(report), flush=True)
    bpy.ops.wm.quit_blender()
    return None


def mark(name):
    def action():
        report["events"].append([name, len(engine.frame_times)])

    return action


schedule += [(0.3, setup), (0.1, mark("rendered"))]
if region_size is not None:
    schedule += [(0.4, fit_region), (0.4, fit_region), (0.4, fit_region)]
schedule.append((0.4, record_region))
schedule += [(0.05, lambda i=i: orbit(i)) for i in range(40)]  # orbit for about 2 s: coarse frames
schedule += [(0.0, mark("still")), (4.0, mark("shot")), (0.0, shoot), (0.5, lambda: None)]
bpy.app.timers.register(tick, first_interval=0.2)
