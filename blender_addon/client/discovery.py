"""Finding the service that runs on a data folder from its ``<data-dir>/service.json`` ({"url", "pid"}).

The file outlives a service killed with SIGKILL, and its port may then belong to anything, so it is
believed only when its process is alive, the folder's ``service.lock`` is held (POSIX: the kernel
drops the service's ``flock`` with the process, a pid can be reused) and its URL is plain http on this
machine's loopback; the client then asks ``/health`` (without the token) what answers before it sends
the token anywhere.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.parse
from pathlib import Path

from .errors import ServiceUnreachable

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def is_loopback_http(url: str) -> bool:
    """``http://`` to 127.0.0.1, localhost or [::1] with a port, nothing else (no user info, no path)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "http"
        and parts.hostname in LOOPBACK_HOSTS
        and port is not None
        and not parts.username
        and parts.password is None
        and parts.path in ("", "/")
        and not parts.query
        and not parts.fragment
    )


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (POSIX; on Windows this cheap check is not made and it says True)."""
    if sys.platform == "win32":
        return True
    if pid <= 0:
        return False  # 0 and negatives name process groups for kill()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, and /health decides whether it is ours
    return True


def lock_released(data_dir: str | Path) -> bool:
    """Whether ``<data_dir>/service.lock`` exists and no process holds it (then no service runs there).
    A missing file or Windows says False: this check is not made. The probe takes a shared lock and
    drops it at once; the service retries its own for a while, so the probe cannot keep it from starting."""
    if sys.platform == "win32":
        return False
    import fcntl  # POSIX only

    try:
        fd = os.open(Path(data_dir) / "service.lock", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return False  # held: a service runs
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def service_url(data_dir: str | Path) -> str:
    """The URL in ``<data_dir>/service.json`` if it may be asked what it is; :class:`ServiceUnreachable`
    naming why not (no file, not readable, the process gone, the lock free, not a loopback http URL)."""
    path = Path(data_dir) / "service.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        url, pid = record["url"], record["pid"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ServiceUnreachable(
            0, f"no running service found for {data_dir} ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(url, str) or not is_loopback_http(url):
        raise ServiceUnreachable(
            0,
            f"no running service found for {data_dir}: service.json names {str(url)[:100]!r}, not a loopback http URL",
        )
    if not isinstance(pid, int) or isinstance(pid, bool) or not pid_alive(pid):
        raise ServiceUnreachable(
            0, f"no running service found for {data_dir}: service.json is stale (process {pid} is gone)"
        )
    if lock_released(data_dir):
        raise ServiceUnreachable(
            0, f"no running service found for {data_dir}: service.json is stale (no process holds service.lock)"
        )
    return url.rstrip("/")
