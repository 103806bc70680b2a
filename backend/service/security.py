"""Guarding a data folder: private permissions, one service at a time, and the access token.

- :func:`secure_data_dir`: the folder holds the token and the library, so nobody else may read or
  write it: made 0700, tightened when this user owns it, refused when it belongs to someone else.
- :class:`DataDirLock`: an exclusive ``flock`` on ``<data-dir>/service.lock`` held for the life of the
  service process. The kernel drops it when the process ends in any way (kill -9 included), so a
  lock that is not held always means "no service here", whatever stale files say.
- :func:`load_or_create_token`: random, made at first start, kept in ``<data-dir>/token`` (0600).
"""

from __future__ import annotations

import errno
import hmac
import logging
import os
import secrets
import stat
import time
from pathlib import Path

from backend.errors import NeuralShapesError
from backend.files import write_atomically

log = logging.getLogger(__name__)
MIN_TOKEN_LENGTH = 32
LOCK_FILE = "service.lock"
LOCK_RETRY_SECONDS = 1.0  # a client probing whether a service runs takes the lock for an instant


class AlreadyServing(NeuralShapesError):
    """Another process holds the data folder's lock."""


def secure_data_dir(path: Path) -> None:
    """Create ``path`` (0700) or make an existing one private; :class:`NeuralShapesError` when others
    can read or write it and it is not this user's to change. No-op off POSIX (ACLs rule there)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.name != "posix":
        return
    info = path.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise NeuralShapesError(f"data folder {path} is not a folder")
    loose = stat.S_IMODE(info.st_mode) & 0o077
    if not loose:
        return
    if info.st_uid != os.geteuid():
        raise NeuralShapesError(
            f"data folder {path} can be read or written by others (mode {stat.S_IMODE(info.st_mode):04o}) and belongs to "
            f"user id {info.st_uid}, not to this user ({os.geteuid()}): use a folder of your own (--data-dir)"
        )
    try:
        os.chmod(path, 0o700)
    except OSError as error:
        raise NeuralShapesError(
            f"data folder {path} can be read or written by others and cannot be made private ({error.strerror})"
        ) from None
    log.warning(
        "data folder %s could be read or written by others (mode %04o): set to 0700", path, stat.S_IMODE(info.st_mode)
    )


class DataDirLock:
    """The exclusive lock of one data folder; :meth:`acquire` it before touching anything inside.

    The lock file holds the owner's pid (for the message a second service prints). It is never
    deleted: removing a lock file lets two processes lock two different files of the same name."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path) -> DataDirLock:
        """Take the lock of ``data_dir`` or raise :class:`AlreadyServing` naming the folder and the pid."""
        path = Path(data_dir) / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        deadline = time.monotonic() + LOCK_RETRY_SECONDS
        while not _try_lock(fd):
            if time.monotonic() > deadline:
                holder = _read_pid(fd)
                os.close(fd)
                who = f"pid {holder}" if holder else "another process"
                raise AlreadyServing(
                    f"data folder {data_dir} is already served by {who}: stop that service first or use another --data-dir"
                )
            time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        return cls(path, fd)

    def release(self) -> None:
        """Give the lock back (it also goes when the process ends)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _try_lock(fd: int) -> bool:
    if os.name == "posix":
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
        return True
    import msvcrt  # Windows: a byte far past the pid text, so others can still read the pid

    os.lseek(fd, 1 << 20, os.SEEK_SET)
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _read_pid(fd: int) -> int | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 32).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def load_or_create_token(path: Path) -> str:
    """The token in ``path``; a new one (written atomically, 0600) when it is missing or unusable, or
    when others could read it or another user owns it (then it may be known: it is replaced)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        token = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        token = ""
    except (OSError, UnicodeDecodeError) as error:
        log.warning("token file %s is unreadable (%s): making a new token", path, error)
        token = ""
    if token and os.name == "posix":
        info = path.stat()
        if info.st_uid != os.geteuid() or stat.S_IMODE(info.st_mode) & 0o077:
            log.warning("token file %s could be read by others or belongs to another user: making a new token", path)
            token = ""
    if len(token) >= MIN_TOKEN_LENGTH and token.isprintable():
        return token
    token = secrets.token_urlsafe(32)
    write_atomically(path, (token + "\n").encode("ascii"), private=True)
    return token


def token_matches(expected: str, authorization: str | None) -> bool:
    """Whether an ``Authorization`` header value is ``Bearer <expected>`` (constant-time comparison)."""
    if not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8", "replace"), expected.encode("ascii"))
