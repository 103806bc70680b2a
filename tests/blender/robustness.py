"""Run with the bpy module (a subprocess of tests/test_addon_robustness.py): the installed extension's
buttons against a stand-in service whose answers are slow, cut off or not JSON (the shape id picks the
fault), then disabling the add-on while requests hang.

    python robustness.py ZIP URL TOKEN
Prints one JSON line.
"""

import json
import sys
import threading
import time

import bpy

zip_path, url, token = sys.argv[1:4]
package = "bl_ext.user_default.neural_shapes"
bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
prefs = bpy.context.preferences.addons[package].preferences
prefs.service_url, prefs.token = url, token
tasks = sys.modules[f"{package}.background.workers"]
bpy.ops.wm.read_homefile(use_empty=True)
scene, wm = bpy.context.scene, bpy.context.window_manager
scene.neural_shapes.resolution = 24
scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 32, 24, 100
camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
scene.collection.objects.link(camera)
camera.location = (0.0, -6.0, 0.0)
camera.rotation_euler = (1.5708, 0.0, 0.0)
scene.camera = camera

FAULTS = ("fine", "slow", "dies", "truncated", "badjson", "badjob", "hang")
for fault in FAULTS:  # a neural object per fault, its shape id the fault's name
    mesh = bpy.data.meshes.new(fault)
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
    obj = bpy.data.objects.new(fault, mesh)
    obj["neural_shape_h5"], obj["neural_shape_id"] = b"\x89HDF stand-in", fault  # as older add-ons stored it
    obj.neural_shapes.viewport_resolution = 24
    scene.collection.objects.link(obj)

BUTTONS = {  # name: (operator, options, the line of window_manager.neural_shapes its outcome goes to)
    "preview": (bpy.ops.neural.render_preview, {}, "message"),
    "similar": (bpy.ops.neural.find_similar, {"k": 1}, "message"),
    "classify": (bpy.ops.neural.classify, {}, "message"),
    "re_extract": (bpy.ops.neural.re_extract, {"method": "sparse"}, "message"),
    "job": (bpy.ops.neural.complete, {}, "stage"),
    "connection": (bpy.ops.neural.check_connection, {}, "status"),
}


def only(name: str) -> bpy.types.Object:
    """Make the fault's object the one visible, selected and active neural object (the ones jobs made too)."""
    for obj in bpy.data.objects:
        obj.hide_viewport = obj.name != name and obj != camera
        obj.select_set(obj.name == name)
    bpy.context.view_layer.objects.active = bpy.data.objects[name]
    return bpy.data.objects[name]


def press(name: str) -> tuple[str, float]:
    """Press a button: its result and how long the call took (seconds)."""
    operator, options, _ = BUTTONS[name]
    started = time.perf_counter()
    result = operator(**options)
    return sorted(result)[0], time.perf_counter() - started


def neural_count() -> int:
    return sum(o.neural_shapes.shape is not None or "neural_shape_h5" in o for o in bpy.data.objects)


report = {}

# Slow: every button returns at once, the work goes on side by side, the results arrive.
only("slow")
started = time.perf_counter()
pressed = {name: press(name) for name in BUTTONS}
tasks.finish()
image = bpy.data.images.get("Neural Preview")
report["slow"] = {
    "pressed": pressed,
    "all_done_after": time.perf_counter() - started,
    "image_size": list(image.size) if image else None,
    "similar_rows": [[item.name, item.distance] for item in wm.neural_shapes.similar],
    "classes": [[item.name, item.probability] for item in wm.neural_shapes.classes],
    "faces_after": len(bpy.data.objects["slow"].data.polygons),
    "stage": wm.neural_shapes.stage,
    "status": wm.neural_shapes.status,
}

# One by one, to read each button's own line: good answers, then broken ones (each task fails with one
# line, nothing is added, every button is free again).
for fault in ("fine", "dies", "truncated", "badjson", "badjob"):
    only(fault)
    before = neural_count()
    lines = {}
    for name, (_, _, line) in BUTTONS.items():
        if fault == "badjob" and name != "job":
            continue
        assert press(name)[0] == "FINISHED"
        tasks.finish()
        lines[name] = getattr(wm.neural_shapes, line)
    report[fault] = {
        "lines": lines,
        "objects_added": neural_count() - before,
        "busy_after": tasks.busy(),
        "buttons_free": {name: operator.poll() for name, (operator, _, _) in BUTTONS.items()},
    }

# Disabling the add-on while requests hang: they are broken off, the timer and the workers end.
only("hang")
for name in ("preview", "similar", "job"):
    press(name)
time.sleep(0.3)  # the workers are now blocked on the stand-in's answers
busy_before = sorted(slot for slot in ("job", "preview", "similar", "classify", "re_extract") if tasks.busy(slot))
tick = tasks.tick
started = time.perf_counter()
bpy.ops.preferences.addon_disable(module=package)
report["unregister"] = {
    "busy_before": busy_before,
    "seconds": time.perf_counter() - started,
    "timer_registered": bpy.app.timers.is_registered(tick),
    "threads": [t.name for t in threading.enumerate() if t.name.startswith("neural-shapes")],
}
print(json.dumps(report))
