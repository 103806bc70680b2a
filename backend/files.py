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


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs get the usual permissions
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_file_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise NeuralShapesError(f"{path}: cannot read file ({error.strerror or error})") from None
