"""Finding, checking, starting and stopping the local service from the add-on's settings (stdlib only, no bpy).

The service keeps its token in ``<data-dir>/token`` and, while it runs, its URL and process id in
``<data-dir>/service.json``; with an empty URL setting the add-on uses that file once it is found alive
(:meth:`.Client.from_running_service`), with an empty token setting it reads the token file. Everything
here blocks: the add-on calls it on a worker thread.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from .client import Client, Interrupter
from .errors import ServiceError

REQUEST_TIMEOUT = 300.0  # seconds for one answer: a dense 1024^3 mesh or a big render is slow work, not a dead service
CHECK_TIMEOUT = 10.0  # seconds for the connection check's answers


@dataclass(frozen=True)
class ConnectionSettings:
    """What the preferences hold: all strings, empty meaning 'find it'."""

    url: str = ""
    token: str = ""
    data_dir: str = ""

    @property
    def folder(self) -> Path:
        return Path(self.data_dir) if self.data_dir else default_data_dir()


def default_data_dir() -> Path:
    """The service's default data folder (the platform's per-user data folder, as ``neural-shapes serve`` uses)."""
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "neural-shapes"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "neural-shapes"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "neural-shapes"


def make_client(
    settings: ConnectionSettings, timeout: float = REQUEST_TIMEOUT, interrupter: Interrupter | None = None
) -> Client:
    """A client for the configured service; :class:`ServiceError` with a plain message when it cannot be found."""
    if not settings.url:
        if settings.token:
            url = Client.from_running_service(settings.folder, timeout, interrupter=interrupter).base_url
            return Client(url, settings.token, timeout, interrupter=interrupter)
        return Client.from_running_service(settings.folder, timeout, interrupter=interrupter)
    if settings.token:
        return Client(settings.url, settings.token, timeout, interrupter=interrupter)
    try:
        return Client.from_data_dir(settings.url, settings.folder, timeout, interrupter=interrupter)
    except OSError as error:
        raise ServiceError(
            0, f"no token given and none readable in {settings.folder} ({error.strerror or error})"
        ) from None


def check_connection(settings: ConnectionSettings, interrupter: Interrupter | None = None) -> str:
    """One line for the panel: the service version when it answers and speaks our API, else why not."""
    try:
        client = make_client(settings, CHECK_TIMEOUT, interrupter)
        health = client.check_version()  # what answers, asked without the token
        client.jobs(limit=1)  # /health needs no token: this call proves the token is right
    except ServiceError as error:
        return f"not connected: {error.detail}"
    return f"connected: {health.service} {health.version} (API {health.api_version})"


def start_service(
    command: str, data_dir: Path, timeout: float = 120.0, spawned: list[subprocess.Popen] | None = None
) -> tuple[subprocess.Popen, str]:
    """Start ``<command> serve --port 0 --data-dir DATA_DIR`` as a child process; returns it and its URL
    once it has printed it, :class:`ServiceError` with the service's last complaint when it does not
    within ``timeout`` seconds. ``spawned`` gets the process while it starts (so that it can be stopped
    from another thread meanwhile) and keeps it if it started.

    ``command``: the backend's command line (``neural-shapes``, a path to it, or ``/venv/bin/python -m
    backend.cli``); empty: ``neural-shapes`` from PATH or this repository's ``.venv``.
    """
    repo_exe = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "neural-shapes"
    exe = command.split() if command else [shutil.which("neural-shapes") or str(repo_exe)]
    # stderr to an unnamed file (the child keeps its own handle): a pipe nobody drains would stall a
    # chatty service; read back when it fails to start.
    with tempfile.TemporaryFile() as log:
        try:
            process = subprocess.Popen(
                [*exe, "serve", "--port", "0", "--data-dir", str(data_dir)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        except OSError as error:
            raise ServiceError(
                0,
                f"cannot run '{' '.join(exe)}' ({error.strerror or error}): set the backend command in the preferences",
            ) from None
        if spawned is not None:
            spawned.append(process)
        line = _first_line(process, timeout)  # the service prints its URL first
        if line.startswith("listening on "):
            return process, line.split()[-1]
        stop_service(process)
        if spawned is not None and process in spawned:
            spawned.remove(process)
        log.seek(0)
        said = [text.strip() for text in log.read().decode("utf-8", "replace").splitlines() if text.strip()]
    why = said[-1][:300] if said else f"it printed {line!r}" if line else f"no URL within {timeout:g} s"
    raise ServiceError(0, f"'{' '.join(exe)} serve' did not start: {why}")


def stop_service(process: subprocess.Popen, timeout: float = 30.0) -> int:
    """SIGTERM (the service finishes its requests and marks running jobs interrupted), then SIGKILL after
    ``timeout`` seconds; returns the exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()
    return process.returncode


def _first_line(process: subprocess.Popen, timeout: float) -> str:
    """The first stdout line, or "" if none comes within ``timeout`` s (a thread: pipes cannot be polled on Windows)."""
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.append(process.stdout.readline()), name="neural-shapes-service-start", daemon=True
    )
    reader.start()
    reader.join(timeout)
    return lines[0].strip() if lines else ""
