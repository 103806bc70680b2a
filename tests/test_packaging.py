"""The package as users install it: a wheel that builds the Blender add-on outside a checkout, and the
version written in one place (``backend.__version__``) and stamped into what ships."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from backend import __version__

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The project's wheel unpacked into a folder that stands in for site-packages."""
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("neural_shapes-*.whl")
    assert wheel.name.startswith(f"neural_shapes-{__version__}-")  # the wheel's version is backend.__version__
    site = tmp_path_factory.mktemp("site")
    zipfile.ZipFile(wheel).extractall(site)
    return site


def test_build_addon_works_from_an_installed_package(installed, tmp_path):
    script = (
        "import sys; from pathlib import Path; import backend; from backend.addon_build import build_addon;"
        f"assert Path(backend.__file__).is_relative_to({str(installed)!r}), backend.__file__;"
        f"print(*build_addon(Path({str(tmp_path / 'zips')!r})), sep='\\n')"
    )
    env = {"PYTHONPATH": str(installed), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    extension, legacy = map(Path, result.stdout.split())
    assert (
        extension.name == f"neural_shapes-{__version__}.zip"
        and legacy.name == f"neural_shapes-{__version__}-legacy.zip"
    )
    with zipfile.ZipFile(extension) as archive:
        names = set(archive.namelist())
        manifest = tomllib.loads(archive.read("blender_manifest.toml").decode())
        bl_info = ast.literal_eval(
            archive.read("__init__.py").decode().split("bl_info = ", 1)[1].split("\n}\n")[0] + "}"
        )
    assert {"__init__.py", "registration.py", "client/client.py", "client/README.md", "README.md"} <= names
    assert manifest["version"] == __version__ and bl_info["version"] == tuple(map(int, __version__.split(".")))
    with zipfile.ZipFile(legacy) as archive:
        assert "neural_shapes/blender_manifest.toml" in archive.namelist()


def test_the_version_is_written_once():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and pyproject["project"]["dynamic"] == ["version"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "backend.__version__"}
