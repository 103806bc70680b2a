"""Run with the bpy module (a subprocess of tests/test_addon_scene.py): neural objects as scene citizens.

    python scene_citizens.py ZIP DATA_DIR WORK_DIR

Converts a cube (data-linked material) and a thin torus (object-linked material) through the real service,
then checks what an artist relies on: materials, smooth shading and normals, modifiers, a user attribute
and a linked duplicate surviving three re-extracts and a save/reload; final renders (Workbench, Cycles) at
the render resolution against the proxy and the source; shapes stored once however often they are
duplicated; older files adopted; the Object panel and Save .h5. Prints one JSON line.
"""

import json
import sys
import time
from pathlib import Path

import bpy
import numpy as np

zip_path, data_dir, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
package = "bl_ext.user_default.neural_shapes"
bpy.context.preferences.addons[package].preferences.data_dir = data_dir
tasks = sys.modules[f"{package}.background.workers"]
render_time = sys.modules[f"{package}.scene.render_time"]
report = {}

bpy.ops.wm.read_homefile(use_empty=True)
scene = bpy.context.scene
red, blue = bpy.data.materials.new("Red"), bpy.data.materials.new("Blue")
bpy.ops.mesh.primitive_cube_add(size=1.6, location=(-2.0, 0.0, 0.0))
cube = bpy.context.active_object
cube.data.materials.append(red)
bpy.ops.mesh.primitive_torus_add(major_radius=1.0, minor_radius=0.09, location=(1.5, 0.0, 0.0), rotation=(1.2, 0, 0))
torus = bpy.context.active_object
torus.data.materials.append(None)
torus.material_slots[0].link = "OBJECT"
torus.material_slots[0].material = blue
for obj in (cube, torus):
    obj.select_set(True)
scene.neural_shapes.target_error = 0.004  # proxies at the default 128^3, render resolution the default 256
assert bpy.ops.neural.convert_selected() == {"FINISHED"}
tasks.finish()
cube_n, torus_n = bpy.data.objects["Cube (neural)"], bpy.data.objects["Torus (neural)"]


def slots(obj) -> list:
    return [(slot.link, slot.material.name if slot.material else None) for slot in obj.material_slots]


def smooth(obj) -> bool:
    flags = np.empty(len(obj.data.polygons), dtype=bool)
    obj.data.polygons.foreach_get("use_smooth", flags)
    return bool(flags.all())


report["converted"] = {"cube": slots(cube_n), "torus": slots(torus_n), "smooth": smooth(cube_n)}
report["custom_normals"] = cube_n.data.has_custom_normals
report["resolutions"] = [torus_n.neural_shapes.viewport_resolution, torus_n.neural_shapes.render_resolution]

# Modifiers, a user attribute, a linked duplicate and a file round trip survive three re-extracts.
torus_n.data.materials.append(bpy.data.materials.new("Green"))  # a material assigned after the conversion
torus_n.modifiers.new("Triangulate", "TRIANGULATE")
twin = torus_n.copy()  # Alt+D: shares the mesh
twin.location.y += 3
scene.collection.objects.link(twin)
paint = torus_n.data.attributes.new("paint", "FLOAT", "POINT")
xs = np.empty(len(torus_n.data.vertices) * 3, dtype=np.float32)
torus_n.data.vertices.foreach_get("co", xs)
paint.data.foreach_set("value", xs[0::3])  # the x coordinate: checkable after a transfer
faces = []
for resolution in (24, 40, 48):
    torus_n.neural_shapes.viewport_resolution = resolution
    bpy.ops.object.select_all(action="DESELECT")
    torus_n.select_set(True)
    assert bpy.ops.neural.re_extract(method="sparse") == {"FINISHED"}
    tasks.finish()
    faces.append(len(torus_n.data.polygons))
values = np.empty(len(torus_n.data.vertices), dtype=np.float32)
torus_n.data.attributes["paint"].data.foreach_get("value", values)
co = np.empty(len(torus_n.data.vertices) * 3, dtype=np.float32)
torus_n.data.vertices.foreach_get("co", co)
report["re_extracted"] = {
    "faces": faces,
    "slots": slots(torus_n),
    "modifiers": [m.type for m in torus_n.modifiers],
    "twin_shares_mesh": twin.data == torus_n.data,
    "paint_follows_x": float(np.corrcoef(values, co[0::3])[0, 1]),
    "smooth": smooth(torus_n),
}
# Undo takes the last re-extract back (it is one step), redo brings it again.
bpy.ops.ed.undo()
undone = len(bpy.data.objects["Torus (neural)"].data.polygons)
bpy.ops.ed.redo()
report["undo"] = [undone, len(bpy.data.objects["Torus (neural)"].data.polygons)]
blend = work / "citizens.blend"
bpy.ops.wm.save_as_mainfile(filepath=str(blend))
bpy.ops.wm.open_mainfile(filepath=str(blend))
scene = bpy.context.scene
cube_n, torus_n = bpy.data.objects["Cube (neural)"], bpy.data.objects["Torus (neural)"]
report["reloaded"] = {
    "cube": slots(cube_n),
    "torus": slots(torus_n),
    "twin_shares_mesh": bpy.data.objects["Torus (neural).001"].data == torus_n.data,
    "modifiers": [m.type for m in torus_n.modifiers],
}

# Final renders: the torus at its render resolution 256 (proxy 16) against the proxy and the source.
torus_n.neural_shapes.viewport_resolution = 16
bpy.ops.object.select_all(action="DESELECT")
torus_n.select_set(True)
bpy.ops.neural.re_extract(method="sparse")
tasks.finish()
proxy_faces = len(torus_n.data.polygons)
camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
scene.collection.objects.link(camera)
camera.location = (1.5, -5.0, 0.0)
camera.rotation_euler = (1.5708, 0.0, 0.0)
scene.camera = camera
light = bpy.data.objects.new("Light", bpy.data.lights.new("Light", "SUN"))
scene.collection.objects.link(light)
scene.render.resolution_x = scene.render.resolution_y = 128
scene.render.resolution_percentage = 100
scene.render.film_transparent = True
for obj in scene.objects:  # the torus alone in view: its neural object, then its source
    if obj.type == "MESH":
        obj.hide_render = obj != torus_n


def render(engine: str, name: str) -> np.ndarray:
    scene.render.engine = engine
    scene.render.filepath = str(work / name)
    started = time.perf_counter()
    bpy.ops.render.render(write_still=True)
    report.setdefault("render_seconds", {})[name] = round(time.perf_counter() - started, 2)
    image = bpy.data.images.load(str(work / f"{name}.png"))
    width, height = image.size
    pixels = np.empty(width * height * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    bpy.data.images.remove(image)
    return pixels.reshape(height, width, 4)[..., 3] > 0.5


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


scene.cycles.samples = 4
detailed = render("BLENDER_WORKBENCH", "workbench_256")
report["after_render_faces"] = [len(torus_n.data.polygons), proxy_faces]  # the proxy is back
cycles = render("CYCLES", "cycles_256")
torus_n.neural_shapes.render_resolution = 16
proxy = render("BLENDER_WORKBENCH", "workbench_proxy")
torus_n.hide_render, bpy.data.objects["Torus"].hide_render = True, False
source = render("BLENDER_WORKBENCH", "workbench_source")
report["silhouette_iou"] = {
    "render_resolution": iou(detailed, source),
    "cycles": iou(cycles, source),
    "proxy": iou(proxy, source),
}
report["cached"] = len(render_time._cache)

# No service (another data folder, nothing cached): the render goes on with the proxy.
render_time._cache.clear()
bpy.context.preferences.addons[package].preferences.data_dir = str(work / "no-service")
torus_n.hide_render, bpy.data.objects["Torus"].hide_render = False, True
torus_n.neural_shapes.render_resolution = 256
without_service = render("BLENDER_WORKBENCH", "workbench_no_service")
report["without_service"] = {"iou_with_proxy": iou(without_service, proxy), "faces": len(torus_n.data.polygons)}
bpy.context.preferences.addons[package].preferences.data_dir = data_dir

# Stored once: 100 duplicates of a neural object against 100 of a plain object with the same mesh.
bpy.ops.wm.read_homefile(use_empty=True)
bpy.ops.wm.open_mainfile(filepath=str(blend))
cube_n = bpy.data.objects["Cube (neural)"]


def saved_size(path: Path) -> int:
    bpy.ops.wm.save_as_mainfile(filepath=str(path), compress=False)
    return path.stat().st_size


def duplicate(obj, count: int, copy_data: bool) -> None:
    for _ in range(count):
        copy = obj.copy()
        if copy_data:  # Shift+D: the mesh is copied too
            copy.data = obj.data.copy()
        bpy.context.scene.collection.objects.link(copy)


report["stored_once"] = {"shape_bytes": len(bytes(cube_n.neural_shapes.shape["neural_shape_h5"]))}
# The cube has the default resolutions; the torus a viewport resolution of its own (a property stored per object).
torus_n = bpy.data.objects["Torus (neural)"]
for kind, obj, copy_data in (("copies", cube_n, True), ("linked", cube_n, False), ("custom", torus_n, False)):
    twin = bpy.data.objects.new(f"Plain {kind}", obj.data.copy())  # a plain object with the same mesh
    bpy.context.scene.collection.objects.link(twin)
    before = saved_size(work / f"{kind}_base.blend")
    duplicate(obj, 100, copy_data)  # Shift+D (mesh copied) or Alt+D (mesh shared)
    neural = saved_size(work / f"{kind}_neural.blend")
    duplicate(twin, 100, copy_data)
    plain = saved_size(work / f"{kind}_plain.blend")
    report["stored_once"][kind] = {"neural_growth": neural - before, "plain_growth": plain - neural}
report["stored_once"]["shape_datablocks"] = sum("neural_shape_h5" in t for t in bpy.data.texts)

# Older files: per-object bytes are moved to a shared datablock on load.
bpy.ops.wm.read_homefile(use_empty=True)
old = bpy.data.objects.new("Old (neural)", bpy.data.meshes.new("Old"))
old["neural_shape_h5"], old["neural_resolution"], old["neural_surface_error"] = b"\x89HDF stand-in", 40, 0.002
bpy.context.scene.collection.objects.link(old)
bpy.ops.wm.save_as_mainfile(filepath=str(work / "legacy.blend"))
bpy.ops.wm.open_mainfile(filepath=str(work / "legacy.blend"))
old = bpy.data.objects["Old (neural)"]
report["legacy"] = {
    "adopted": old.neural_shapes.shape is not None and "neural_shape_h5" not in old,
    "bytes": bytes(old.neural_shapes.shape["neural_shape_h5"]).decode("latin-1") if old.neural_shapes.shape else "",
    "viewport_resolution": old.neural_shapes.viewport_resolution,
}

# The Object panel and Save .h5.
bpy.ops.wm.open_mainfile(filepath=str(blend))
torus_n = bpy.data.objects["Torus (neural)"]
bpy.context.view_layer.objects.active = torus_n
panel = getattr(bpy.types, "OBJECT_PT_neural_shape", None)
report["panel"] = panel is not None and panel.bl_context == "object" and panel.poll(bpy.context)
saved = work / "torus.h5"
bpy.ops.neural.save_shape(filepath=str(saved))
report["saved_h5"] = saved.read_bytes() == bytes(torus_n.neural_shapes.shape["neural_shape_h5"])
report["shape_id"] = torus_n.neural_shapes.shape["neural_shape_id"]
print(json.dumps(report))
