"""Service operators: Check Connection, Start Service and Stop Service (the sidebar's Service panel and
the preferences). They only talk to the service or start and stop its process, so they take no undo step.

Every operator returns at once: the connection check and the process handling run on a worker
(:mod:`..background.workers`), their outcome shown on the panel's status line.
"""

from __future__ import annotations

import subprocess

import bpy

from ..background import workers
from ..client.connection import ConnectionSettings, check_connection, start_service, stop_service
from ..settings import connection_settings, preferences

_service: list[
    subprocess.Popen
] = []  # the service processes this Blender started (a worker appends, the main thread stops)


class NEURAL_OT_check_connection(bpy.types.Operator):
    """Ask the neural-shapes service for its version and check the token"""

    bl_idname = "neural.check_connection"
    bl_label = "Check Connection"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not workers.busy("connection")

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = connection_settings(context)
        workers.start(
            "connection",
            lambda: check_connection(settings, workers.interrupter()),
            str,
            title="Check Connection",
            pending="checking ...",
            line="status",
        )
        return {"FINISHED"}


class NEURAL_OT_start_service(bpy.types.Operator):
    """Start neural-shapes serve as a child of Blender (when none answers on the data folder)"""

    bl_idname = "neural.start_service"
    bl_label = "Start Service"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not workers.busy("service")

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings, command = connection_settings(context), preferences(context).backend_command.strip()
        workers.start(
            "service",
            lambda: _start(settings, command),
            str,
            title="Start Service",
            pending="starting the service ...",
            line="status",
        )
        return {"FINISHED"}


class NEURAL_OT_stop_service(bpy.types.Operator):
    """Stop the service this Blender started"""

    bl_idname = "neural.stop_service"
    bl_label = "Stop Service"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return bool(_service) and not workers.busy("service")

    def execute(self, context: bpy.types.Context) -> set[str]:
        workers.start(
            "service",
            lambda: f"service stopped (exit code {stop_services()})",
            str,
            title="Stop Service",
            pending="stopping the service ...",
            line="status",
        )
        return {"FINISHED"}


def _start(settings: ConnectionSettings, command: str) -> str:
    """A worker's Start Service: none when one answers on the data folder (its service.json checked
    first), else a child process; returns the status line."""
    status = check_connection(settings, workers.interrupter())
    if status.startswith("connected"):
        return f"already running, {status}"
    workers.pause(0)  # Interrupted when the add-on was disabled meanwhile: spawn nothing then
    _, url = start_service(command, settings.folder, spawned=_service)
    return f"started at {url}; {check_connection(settings, workers.interrupter())}"


def stop_services() -> int | None:
    """Stop the services this Blender started (a worker, or unregister); the last exit code."""
    code = None
    while _service:
        code = stop_service(_service.pop())
    return code
