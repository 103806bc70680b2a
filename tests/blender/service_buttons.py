"""Run with the bpy module: the preferences' Start / Stop Service buttons and a service that is down.

    python service_buttons.py ZIP DATA_DIR BACKEND_COMMAND
Prints one JSON line.
"""

import json
import sys

import bpy

zip_path, data_dir, command = sys.argv[1:4]
bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
prefs = bpy.context.preferences.addons["bl_ext.user_default.neural_shapes"].preferences
prefs.data_dir, prefs.backend_command = data_dir, command
wm = bpy.context.window_manager


def press(operator) -> str:
    try:
        return sorted(operator())[0]
    except RuntimeError as error:  # an ERROR report raises when called from a script
        return f"error: {error}".strip()


report = {"down": press(bpy.ops.neural.check_connection), "down_status": wm.neural_shapes_status}
report["start"] = press(bpy.ops.neural.start_service)
report["started_status"] = wm.neural_shapes_status
report["stop"] = press(bpy.ops.neural.stop_service)
report["after_stop"] = press(bpy.ops.neural.check_connection)
print(json.dumps(report))
