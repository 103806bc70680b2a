"""Packaging the Blender add-on: an extension zip (Blender 4.2+) and a legacy add-on zip (older Blenders).

Both hold the same files: the Python sources and READMEs of the ``blender_addon`` package plus the
extension manifest (``blender_manifest.toml``, at the top of the repository; the package links to it so
an installed neural-shapes carries it too). The extension zip has them at its root (Blender's extension
layout); the legacy zip has them in a ``neural_shapes/`` folder, the layout ``Install Add-on`` expects.
The version in both (the manifest's ``version`` and ``bl_info["version"]``) is ``backend.__version__``.
"""

from __future__ import annotations

import importlib.util
import io
import re
import tomllib
import zipfile
from pathlib import Path

from backend import __version__
from backend.files import write_atomically

MANIFEST_NAME = "blender_manifest.toml"


def addon_dir() -> Path:
    """The ``blender_addon`` package's folder, in a checkout or an installed neural-shapes (not imported: bpy-free either way)."""
    spec = importlib.util.find_spec("blender_addon")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the blender_addon package is not installed with neural-shapes")
    return Path(spec.origin).parent


def addon_files(folder: Path) -> list[tuple[Path, str]]:
    """(file on disk, path inside the package) for everything the add-on ships."""
    files = [(folder / MANIFEST_NAME, MANIFEST_NAME)]
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".md") and "__pycache__" not in path.parts:
            files.append((path, path.relative_to(folder).as_posix()))
    return files


def stamped(inside: str, data: bytes) -> bytes:
    """A file's bytes with the package version written in where the add-on declares its own."""
    text = data.decode("utf-8")
    if inside == MANIFEST_NAME:
        text, count = re.subn(r'(?m)^version = "[^"]*"$', f'version = "{__version__}"', text)
    elif inside == "__init__.py":
        numbers = ", ".join(__version__.split("."))
        text, count = re.subn(r'"version": \([0-9, ]*\)', f'"version": ({numbers})', text)
    else:
        return data
    if count != 1:
        raise ValueError(f"{inside}: no single version to stamp")
    return text.encode("utf-8")


def build_addon(out_dir: Path) -> tuple[Path, Path]:
    """Write ``<id>-<version>.zip`` (extension) and ``<id>-<version>-legacy.zip`` into ``out_dir``; returns both paths."""
    folder = addon_dir()
    manifest = tomllib.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    name = f"{manifest['id']}-{__version__}"
    out_dir.mkdir(parents=True, exist_ok=True)
    extension, legacy = out_dir / f"{name}.zip", out_dir / f"{name}-legacy.zip"
    for target, prefix in ((extension, ""), (legacy, f"{manifest['id']}/")):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path, inside in addon_files(folder):
                archive.writestr(prefix + inside, stamped(inside, path.read_bytes()))
        write_atomically(target, buffer.getvalue())
    return extension, legacy
