"""Packaging the Blender add-on: an extension zip (Blender 4.2+) and a legacy add-on zip (older Blenders).

Both hold the same files: the Python sources and READMEs of ``blender_addon/`` plus the repository's
``blender_manifest.toml``. The extension zip has them at its root (Blender's extension layout); the
legacy zip has them in a ``neural_shapes/`` folder, the layout ``Install Add-on`` expects.
"""

from __future__ import annotations

import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADDON_DIR = ROOT / "blender_addon"
MANIFEST = ROOT / "blender_manifest.toml"


def addon_files() -> list[tuple[Path, str]]:
    """(file on disk, path inside the package) for everything the add-on ships."""
    files = [(MANIFEST, "blender_manifest.toml")]
    for path in sorted(ADDON_DIR.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".md") and "__pycache__" not in path.parts:
            files.append((path, path.relative_to(ADDON_DIR).as_posix()))
    return files


def build_addon(out_dir: Path) -> tuple[Path, Path]:
    """Write ``<id>-<version>.zip`` (extension) and ``<id>-<version>-legacy.zip`` into ``out_dir``; returns both paths."""
    manifest = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    name = f"{manifest['id']}-{manifest['version']}"
    out_dir.mkdir(parents=True, exist_ok=True)
    extension, legacy = out_dir / f"{name}.zip", out_dir / f"{name}-legacy.zip"
    for target, prefix in ((extension, ""), (legacy, f"{manifest['id']}/")):
        tmp = target.with_name(f".{target.name}.tmp")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path, inside in addon_files():
                archive.write(path, prefix + inside)
        tmp.replace(target)
    return extension, legacy
