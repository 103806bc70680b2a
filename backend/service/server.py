"""Running the service: bind 127.0.0.1 (port 0 = a free one), announce the URL, serve with uvicorn,
stop cleanly on SIGINT / SIGTERM (running jobs end as interrupted, queued ones wait for next start).

One service per data folder. Start-up order: make the folder private (:func:`secure_data_dir`), take
its lock (:class:`DataDirLock`; a second service stops here with one line, having touched nothing),
remove what a killed predecessor left (``service.json``, temporary files), open token, index and
library, bind, and only then write ``<data-dir>/service.json`` = ``{"url": "http://127.0.0.1:PORT",
"pid": PID}`` (0600, loopback URLs only). A clean exit removes it; kill -9 cannot.

How a client decides that ``service.json`` is stale (and must not be sent the token): it is stale if
the ``pid`` is not a live process, or if ``<data-dir>/service.lock`` is not locked (a non-blocking
``flock`` on it succeeds: release it at once), or if its ``url`` is not ``http://`` on a loopback
address. The lock is the definitive test (the kernel drops it with the process; a pid can be
reused); the pid test needs no file access. Even then the token only goes to the API routes, never
to ``/health``, and no redirect is followed.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path

import uvicorn

from backend.files import write_atomically
from backend.service.api import create_app
from backend.service.config import ServiceSettings
from backend.service.core import open_service
from backend.service.security import DataDirLock, secure_data_dir

GRACEFUL_SECONDS = 10


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; with port 0 the operating system picks a free port (read it from the socket)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def write_service_file(path: Path, url: str) -> None:
    """``<data-dir>/service.json``: where a running service listens (for clients that did not start it)."""
    write_atomically(path, json.dumps({"url": url, "pid": os.getpid()}).encode(), private=True)


def remove_leftovers(settings: ServiceSettings) -> None:
    """What a killed service leaves in the folder itself: its ``service.json`` and temporary files
    (token, service.json). Only the lock holder may call this."""
    settings.service_file_path.unlink(missing_ok=True)
    for tmp in settings.data_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def serve(settings: ServiceSettings, *, announce=print) -> None:
    """Serve until SIGINT / SIGTERM. The first line announced is ``listening on http://HOST:PORT``.
    :class:`~backend.service.security.AlreadyServing` when another process serves the folder."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    os.umask(0o077)  # index, shapes and uploads readable by this user only, like the folder
    secure_data_dir(settings.data_dir)
    lock = DataDirLock.acquire(settings.data_dir)
    try:
        remove_leftovers(settings)
        _serve_locked(settings, announce)
    finally:
        lock.release()


def _serve_locked(settings: ServiceSettings, announce) -> None:
    service = open_service(settings)
    try:
        sock = bind(settings.host, settings.port)
        app = create_app(settings, service=service)
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=GRACEFUL_SECONDS,
            server_header=False,
        )
        server = uvicorn.Server(config)
        # Installed before the URL is announced, so a stop asked for before uvicorn runs still stops it
        # cleanly. uvicorn re-raises the signal that stopped it once it is done; with these handlers as
        # "the previous ones" that ends in a normal return (exit code 0) instead of a KeyboardInterrupt.
        previous = {
            sig: signal.signal(sig, lambda *_: setattr(server, "should_exit", True))
            for sig in (signal.SIGINT, signal.SIGTERM)
        }
        write_service_file(settings.service_file_path, url_of(sock))
        announce(f"listening on {url_of(sock)}")
        announce(f"data folder {settings.data_dir}; token in {settings.token_path}")
        sys.stdout.flush()
        try:
            server.run(sockets=[sock])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            sock.close()
            settings.service_file_path.unlink(missing_ok=True)
    finally:
        service.close()
