"""Reading and writing whole files: one-line errors naming the file, and atomic writes (a temporary file
in the same folder, then a rename), so a half-written output never appears under its final name."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from backend.errors import NeuralShapesError


def _process_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, at import, before any worker thread exists
    os.umask(mask)
    return mask


_UMASK = _process_umask()


def write_atomically(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write ``data`` to ``path`` so that it survives a crash or power loss whole or not at all.

    A temporary file ``.NAME.XXXXXXXX.tmp`` in the same folder (a rename within one file system is atomic;
    folders clean up leftovers by the ``.*.tmp`` pattern), fsynced, renamed over ``path``, then the folder
    fsynced so the rename itself is on disk. ``private``: readable by this user only (tokens); otherwise
    the usual permissions (0666 less the umask).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600 if private else 0o666 & ~_UMASK)  # mkstemp makes 0600 files
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on some platforms (Windows): the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_file_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise NeuralShapesError(f"{path}: cannot read file ({error.strerror or error})") from None


_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
_NOT_IN_NAMES = '/\\:*?"<>|'  # separators here or on Windows, and characters Windows refuses in names
MAX_STEM_BYTES = 160  # names are limited to 255 bytes; room for a suffix and write_atomically's ".NAME.XXXXXXXX.tmp"


def safe_file_stem(name: str, fallback: str = "shape") -> str:
    """A file name stem made from a name found in a file (a shape's or mesh's name): it never leaves the
    folder it is joined to. Separators and characters Windows refuses become ``_``, control characters
    are dropped, leading dots and trailing dots or spaces are stripped (no ``..``, no hidden files), a
    Windows device name gets a ``_`` prefix, at most :data:`MAX_STEM_BYTES` bytes of UTF-8 are kept;
    nothing left gives ``fallback``."""
    text = "".join("_" if c in _NOT_IN_NAMES else c for c in str(name) if c.isprintable())
    text = text.encode("utf-8")[:MAX_STEM_BYTES].decode("utf-8", "ignore").lstrip(". ").rstrip(". ")
    if text.split(".")[0].upper() in _WINDOWS_DEVICES:
        text = f"_{text}"
    return text or fallback
