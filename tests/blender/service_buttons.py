"""Run with the bpy module: the preferences' Start / Stop Service buttons and a service that is down.

    python service_buttons.py ZIP DATA_DIR BACKEND_COMMAND
Prints one JSON line.
"""

import json
import sys

import bpy

zip_path, data_dir, command = sys.argv[1:4]
bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
package = "bl_ext.user_default.neural_shapes"
prefs = bpy.context.preferences.addons[package].preferences
tasks = sys.modules[f"{package}.background.workers"]
prefs.data_dir, prefs.backend_command = data_dir, command
wm = bpy.context.window_manager


def press(operator) -> str:
    """Press a button and tick the add-on's tasks until its work is over (what the timer does in the UI)."""
    try:
        pressed = sorted(operator())[0]
    except RuntimeError as error:  # an ERROR report raises when called from a script
        return f"error: {error}".strip()
    tasks.finish()
    return pressed


report = {"down": press(bpy.ops.neural.check_connection), "down_status": wm.neural_shapes.status}
report["start"] = press(bpy.ops.neural.start_service)
report["started_status"] = wm.neural_shapes.status
report["stop"] = press(bpy.ops.neural.stop_service)
report["stopped_status"] = wm.neural_shapes.status
report["after_stop"] = press(bpy.ops.neural.check_connection)
report["after_stop_status"] = wm.neural_shapes.status
print(json.dumps(report))
