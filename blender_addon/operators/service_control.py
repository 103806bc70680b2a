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
from .base import WorkerTask

_service: list[
    subprocess.Popen
] = []  # the service processes this Blender started (a worker appends, the main thread stops)


class NEURAL_OT_check_connection(WorkerTask, bpy.types.Operator):
    """Ask the neural-shapes service for its version and check the token"""

    bl_idname = "neural.check_connection"
    bl_label = "Check Connection"
    slot = "connection"

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = connection_settings(context)
        return self.start_task(
            lambda: check_connection(settings, workers.interrupter()), str, pending="checking ...", line="status"
        )


class NEURAL_OT_start_service(WorkerTask, bpy.types.Operator):
    """Start neural-shapes serve as a child of Blender (when none answers on the data folder)"""

    bl_idname = "neural.start_service"
    bl_label = "Start Service"
    slot = "service"

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings, command = connection_settings(context), preferences(context).backend_command.strip()
        return self.start_task(
            lambda: _start(settings, command), str, pending="starting the service ...", line="status"
        )


class NEURAL_OT_stop_service(WorkerTask, bpy.types.Operator):
    """Stop the service this Blender started"""

    bl_idname = "neural.stop_service"
    bl_label = "Stop Service"
    slot = "service"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return bool(_service) and super().poll(context)

    def execute(self, context: bpy.types.Context) -> set[str]:
        return self.start_task(
            lambda: f"service stopped (exit code {stop_services()})",
            str,
            pending="stopping the service ...",
            line="status",
        )


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
