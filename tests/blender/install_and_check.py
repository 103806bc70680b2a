"""Run with the bpy module (a subprocess of tests/test_addon.py): install the built extension zip the way
Blender does, enable it, and press Check Connection with the given settings.
(bpy module: timers do not fire while a script runs, so it ticks the add-on's tasks itself.)

    python install_and_check.py ZIP DATA_DIR TOKEN   (TOKEN "" = read it from DATA_DIR)
Prints one JSON line: registered classes and properties, and the status the panel would show.
"""

import json
import sys

import bpy

zip_path, data_dir, token = sys.argv[1:4]
bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
package = "bl_ext.user_default.neural_shapes"
prefs = bpy.context.preferences.addons[package].preferences
prefs.data_dir = data_dir
prefs.token = token
result = bpy.ops.neural.check_connection()  # returns at once: a worker asks the service
sys.modules[f"{package}.background.workers"].finish()  # what the timer does in the UI
SUBPANELS = ("service", "convert", "object", "nf2vec")
print(
    json.dumps(
        {
            "panel": hasattr(bpy.types, "VIEW3D_PT_neural_shapes"),
            "subpanels": {
                name: getattr(getattr(bpy.types, f"VIEW3D_PT_neural_shapes_{name}", None), "bl_parent_id", None)
                for name in SUBPANELS
            },
            "properties": {  # the add-on's properties on each type: one group each, nothing loose
                kind.__name__: {
                    name: type(prop).__name__ + ":" + getattr(prop, "fixed_type", prop).identifier
                    for name, prop in kind.bl_rna.properties.items()
                    if name.startswith("neural")
                }
                for kind in (bpy.types.Scene, bpy.types.Object, bpy.types.WindowManager)
            },
            "operator": hasattr(bpy.ops.neural, "check_connection"),
            "result": sorted(result),
            "status": bpy.context.window_manager.neural_shapes.status,
        }
    )
)
