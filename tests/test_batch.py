"""The headless batch script: with the bpy module (python) and with Debian's blender binary (blender -b)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from backend import __version__
from tests.conftest import ROOT, SAMPLES

pytestmark = pytest.mark.blender

BATCH = ROOT / "blender_addon" / "batch.py"
QUICK = ["--resolution", "48", "--target", "0.01"]
SERVICE = ["--service-command", str(Path(sys.executable).with_name("neural-shapes"))]
needs_blender = pytest.mark.skipif(
    shutil.which("blender") is None, reason="no blender binary (scripts/test installs Debian's)"
)


def outputs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def convert(launch: list[str], tmp_path: Path, *inputs: str) -> subprocess.CompletedProcess:
    """Run the batch script as ``launch`` starts it (python, or blender -b) on ``inputs``: quick fits into
    tmp_path/out by a service of this environment that it starts on tmp_path/data."""
    return subprocess.run(
        [
            *launch,
            "--",
            *inputs,
            "--output",
            str(tmp_path / "out"),
            "--data-dir",
            str(tmp_path / "data"),
            *QUICK,
            *SERVICE,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_mesh_folder_with_python(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    shutil.copy(SAMPLES / "chair.stl", source)
    (source / "broken.obj").write_text("not a mesh\n")
    result = convert([sys.executable, str(BATCH)], tmp_path, "--input", str(source))
    assert result.returncode == 1, result.stdout + result.stderr  # one item failed
    assert outputs(tmp_path / "out") == ["chair.h5", "chair.obj", "chair.png"]
    assert "broken.obj  failed  broken: mesh is empty" in result.stdout and "1 converted, 1 failed" in result.stdout
    assert not (tmp_path / "data" / "service.json").exists()  # the service it started is stopped again


def test_missing_input_is_a_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, str(BATCH), "--", "--input", str(tmp_path / "nope"), "--output", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "--input must be a folder" in result.stderr


@needs_blender
def test_blend_file_with_blender_binary(tmp_path):
    blend = tmp_path / "scene.blend"
    make = (
        "import bpy\n"
        "bpy.ops.wm.read_homefile(use_empty=True)\n"
        "bpy.ops.mesh.primitive_cube_add(size=2, location=(2, 0, 0))\n"
        "bpy.context.active_object.modifiers.new('bevel', 'BEVEL').width = 0.3\n"
        "bpy.ops.mesh.primitive_uv_sphere_add(radius=1, location=(-2, 0, 0))\n"
        f"bpy.ops.wm.save_as_mainfile(filepath={str(blend)!r})\n"
    )
    subprocess.run(
        ["blender", "-b", "--factory-startup", "--python-expr", make], check=True, capture_output=True, timeout=300
    )
    result = convert(["blender", "-b", str(blend), "--factory-startup", "-P", str(BATCH)], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 converted, 0 failed" in result.stdout
    assert outputs(tmp_path / "out") == ["Cube.h5", "Cube.obj", "Cube.png", "Sphere.h5", "Sphere.obj", "Sphere.png"]
    check = (  # without the add-on, its properties are an ID property group holding the shape's datablock
        "import bpy; print('NEURAL', sorted(o.name for o in bpy.data.objects"
        " if o.get('neural_shapes') and 'neural_shape_h5' in o['neural_shapes']['shape']))"
    )
    reopened = subprocess.run(
        ["blender", "-b", str(blend), "--factory-startup", "--python-expr", check],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "NEURAL ['Cube (neural)', 'Sphere (neural)']" in reopened.stdout  # saved into the .blend


@needs_blender
def test_legacy_addon_installs_in_old_blender(tmp_path):
    """Debian's Blender 3.4 predates extensions: the legacy zip installs through Install Add-on."""
    built = subprocess.run(
        [str(Path(sys.executable).with_name("neural-shapes")), "build-addon", "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    script = (
        "import bpy\n"
        f"bpy.ops.preferences.addon_install(filepath={str(tmp_path / f'neural_shapes-{__version__}-legacy.zip')!r})\n"
        "bpy.ops.preferences.addon_enable(module='neural_shapes')\n"
        "print('REGISTERED', hasattr(bpy.types, 'VIEW3D_PT_neural_shapes'), hasattr(bpy.ops.neural, 'convert_selected'),"
        " hasattr(bpy.ops.neural, 'interpolate'))\n"
    )
    env = {
        **os.environ,
        "BLENDER_USER_SCRIPTS": str(tmp_path / "scripts"),
        "BLENDER_USER_CONFIG": str(tmp_path / "config"),
    }
    result = subprocess.run(
        ["blender", "-b", "--factory-startup", "--python-expr", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert "REGISTERED True True True" in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]
