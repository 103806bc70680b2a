"""A screenshot of Properties > Object > Neural Shape for docs/ (issue 18), in a Blender window:

    xvfb-run -a -s "-screen 0 1280x1024x24" blender --factory-startup -p 0 0 1280 1024 \
        --python bench/blender/panel_screenshot.py -- LEGACY_ZIP DATA_DIR SHAPE_ID OUT.png

Installs the legacy add-on (Blender < 4.2), adds the service's shape SHAPE_ID as the active neural object,
shows the Object tab of the Properties editor and saves that editor's area as OUT.png; then quits.
"""

import sys
import traceback

import bpy
from mathutils import Matrix

zip_path, data_dir, shape_id, out = sys.argv[sys.argv.index("--") + 1 :]
bpy.context.preferences.view.show_splash = False
bpy.ops.preferences.addon_install(filepath=zip_path)
bpy.ops.preferences.addon_enable(module="neural_shapes")
bpy.context.preferences.addons["neural_shapes"].preferences.data_dir = data_dir
neural_objects = sys.modules["neural_shapes.scene.neural_objects"]
workers = sys.modules["neural_shapes.background.workers"]
settings = sys.modules["neural_shapes.settings"]


def properties_area():
    """The window's largest area (the 3D viewport at start), made a Properties editor: room for every panel."""
    window = bpy.context.window_manager.windows[0]
    area = max(window.screen.areas, key=lambda a: a.width * a.height)
    area.type = "PROPERTIES"
    return window, area


def setup() -> None:
    try:
        _setup()
    except Exception:
        traceback.print_exc()
        bpy.ops.wm.quit_blender()


def _setup() -> None:
    client = workers.client(settings.connection_settings(bpy.context))
    [shape] = neural_objects.fetch_shapes(client, [shape_id], 64)
    obj = neural_objects.add_neural_object(shape, bpy.context.scene.collection, Matrix.Identity(4), 256)
    for other in bpy.context.scene.objects:
        other.select_set(other == obj)
    bpy.context.view_layer.objects.active = obj
    properties_area()
    bpy.app.timers.register(show_object, first_interval=0.5)  # the new editor's tabs exist once it has drawn


def show_object() -> None:
    _, area = properties_area()
    area.spaces.active.context = "OBJECT"
    area.tag_redraw()
    bpy.app.timers.register(shoot, first_interval=1.5)


def shoot() -> None:
    try:
        window, area = properties_area()
        with bpy.context.temp_override(window=window, area=area):
            bpy.ops.screen.screenshot_area(filepath=out)
    finally:
        bpy.ops.wm.quit_blender()


bpy.app.timers.register(setup, first_interval=1.0)
