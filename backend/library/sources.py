"""The sources of a collection conversion: folders (searched recursively), glob patterns, and text files
listing paths (one per line; blank lines and ``#`` comments skipped; relative paths are relative to the list)."""

from __future__ import annotations

import glob
from pathlib import Path

from backend.errors import NeuralShapesError
from backend.meshes.loading import READABLE_MESH_SUFFIXES

LIST_SUFFIXES = (".txt", ".lst")


def expand_sources(specs: list[str | Path]) -> list[Path]:
    """Every mesh file the specs name, each once, in order: a folder's mesh files (recursively, sorted),
    a glob's matches (``**`` recursive; sorted), a list file's entries (expanded the same way), a file as given.

    Raises :class:`NeuralShapesError` naming a spec that names nothing (a missing path, a glob without matches).
    """
    found: dict[Path, None] = {}
    for spec in specs:
        for path in _expand(str(spec), seen_lists=set()):
            found.setdefault(path, None)
    return list(found)


def _expand(spec: str, seen_lists: set[Path]) -> list[Path]:
    path = Path(spec).expanduser()
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix.lower() in READABLE_MESH_SUFFIXES and p.is_file())
    if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        return _read_list(path, seen_lists)
    if path.is_file():
        return [path]
    if glob.has_magic(spec):
        matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
        files = [p for p in matches if p.is_file() and p.suffix.lower() in READABLE_MESH_SUFFIXES]
        if files:
            return files
        raise NeuralShapesError(f"{spec}: no mesh files match this pattern")
    raise NeuralShapesError(f"{spec}: no such file or folder")


def _read_list(path: Path, seen_lists: set[Path]) -> list[Path]:
    resolved = path.resolve()
    if resolved in seen_lists:
        raise NeuralShapesError(f"{path}: the list includes itself")
    seen_lists.add(resolved)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise NeuralShapesError(f"{path}: cannot read the list of sources ({error})") from None
    found = []
    for line in lines:
        entry = line.strip()
        if entry and not entry.startswith("#"):
            entry_path = Path(entry).expanduser()
            full = entry_path if entry_path.is_absolute() else path.parent / entry_path
            found.extend(_expand(str(full), seen_lists))
    return found
