"""Finding and checking the local service from the add-on's settings (stdlib only, no bpy).

The service keeps its token in ``<data-dir>/token`` and, while it runs, its URL in
``<data-dir>/service.json``; with an empty URL setting the add-on uses those, with an empty token
setting it reads the token file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .client.client import Client, ServiceError


@dataclass(frozen=True)
class ConnectionSettings:
    """What the preferences hold: all strings, empty meaning 'find it'."""

    url: str = ""
    token: str = ""
    data_dir: str = ""


def default_data_dir() -> Path:
    """The service's default data folder (the platform's per-user data folder, as ``neural-shapes serve`` uses)."""
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "neural-shapes"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "neural-shapes"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "neural-shapes"


def make_client(settings: ConnectionSettings, timeout: float = 10.0) -> Client:
    """A client for the configured service; :class:`ServiceError` with a plain message when it cannot be found."""
    data_dir = Path(settings.data_dir) if settings.data_dir else default_data_dir()
    url = settings.url or Client.from_running_service(data_dir, timeout).base_url
    if settings.token:
        return Client(url, settings.token, timeout)
    try:
        return Client.from_data_dir(url, data_dir, timeout)
    except OSError as error:
        raise ServiceError(0, f"no token given and none readable in {data_dir} ({error.strerror or error})") from None


def check_connection(settings: ConnectionSettings) -> str:
    """One line for the panel: the service version when it answers and speaks our API, else why not."""
    try:
        client = make_client(settings)
        health = client.check_version()
        client.jobs(limit=1)  # /health needs no token: this call proves the token is right
    except ServiceError as error:
        return f"not connected: {error.detail}"
    return f"connected: {health.service} {health.version} (API {health.api_version})"


def start_service(command: str, data_dir: Path, timeout: float = 120.0) -> tuple[subprocess.Popen, str]:
    """Start ``<command> serve --port 0 --data-dir DATA_DIR`` as a child process; returns it and its URL.

    ``command``: the backend's command line (``neural-shapes``, a path to it, or ``/venv/bin/python -m
    backend.cli``); empty: ``neural-shapes`` from PATH or this repository's ``.venv``.
    """
    repo_exe = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "neural-shapes"
    exe = command.split() if command else [shutil.which("neural-shapes") or str(repo_exe)]
    try:
        process = subprocess.Popen([*exe, "serve", "--port", "0", "--data-dir", str(data_dir)],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    except OSError as error:
        raise ServiceError(0, f"cannot run '{' '.join(exe)}' ({error.strerror or error}): set the backend command in the preferences") from None
    line = process.stdout.readline().strip()  # the service prints its URL first
    if not line.startswith("listening on "):
        process.kill()
        raise ServiceError(0, f"'{' '.join(exe)} serve' did not start (it printed {line!r})")
    return process, line.split()[-1]
