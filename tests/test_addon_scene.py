"""Neural objects as scene citizens (issue 18), with the bpy module and Debian's Blender: materials, shading,
modifiers, attributes and linked duplicates through re-extracts and save/reload; final renders at the
render resolution (F12 with Workbench and Cycles, ``blender -b -f`` and ``-a``); shapes stored once;
older files adopted; the Object panel and Save .h5."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import blender_script_report

pytestmark = [pytest.mark.blender, pytest.mark.service, pytest.mark.slow]

bpy_spec = pytest.importorskip("importlib.util").find_spec("bpy")
needs_bpy = pytest.mark.skipif(bpy_spec is None, reason="the bpy wheel is not installed")
needs_blender = pytest.mark.skipif(shutil.which("blender") is None, reason="Debian's blender is not installed")


@pytest.fixture(scope="module")
def citizens(built, server, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("citizens")
    return blender_script_report(
        "scene_citizens.py", built[0], server.data_dir, work, resources=work / "blender", timeout=900
    )


@needs_bpy
def test_materials_shading_modifiers_and_linked_duplicates_survive(citizens):
    report = citizens
    assert report["converted"]["cube"] == [["DATA", "Red"]], report  # the source's slots, linked as there
    assert report["converted"]["torus"] == [["OBJECT", "Blue"]], report
    assert report["converted"]["smooth"] and report["custom_normals"]  # the extraction's normals
    assert report["resolutions"] == [128, 256]
    extracted = report["re_extracted"]
    assert extracted["slots"] == [["OBJECT", "Blue"], ["DATA", "Green"]], extracted  # before and after converting
    assert extracted["modifiers"] == ["TRIANGULATE"], extracted
    assert extracted["twin_shares_mesh"] and extracted["smooth"], extracted
    assert extracted["faces"][0] < extracted["faces"][1] < extracted["faces"][2], extracted  # 24, 40, 48
    assert extracted["paint_follows_x"] > 0.99, extracted  # the attribute carried from the nearest old vertex
    assert report["undo"] == extracted["faces"][1:], report["undo"]  # undo: the 40^3 proxy again; redo: 48^3
    reloaded = report["reloaded"]
    assert reloaded["cube"] == [["DATA", "Red"]] and reloaded["torus"] == [["OBJECT", "Blue"], ["DATA", "Green"]]
    assert reloaded["twin_shares_mesh"] and reloaded["modifiers"] == ["TRIANGULATE"], reloaded


@needs_bpy
def test_final_renders_use_the_render_resolution(citizens):
    """F12 renders the torus at 256^3 although its proxy is 16^3: its silhouette matches the source's
    where the proxy's does not; the proxy is back afterwards."""
    iou = citizens["silhouette_iou"]
    assert iou["render_resolution"] > 0.9 and iou["cycles"] > 0.9, iou
    assert iou["proxy"] < iou["render_resolution"] - 0.05, iou
    faces_after, proxy_faces = citizens["after_render_faces"]
    assert faces_after == proxy_faces
    assert citizens["cached"] >= 1
    without = citizens["without_service"]  # no service: the proxy is rendered, nothing breaks
    assert without["iou_with_proxy"] > 0.99 and without["faces"] == proxy_faces, without


@needs_bpy
def test_a_shape_is_stored_once_however_often_it_is_duplicated(citizens):
    stored = citizens["stored_once"]
    # 100 copies (Shift+D) or linked duplicates (Alt+D) of a neural object cost what 100 of a plain object
    # with the same mesh cost, plus under two shapes (not 100).
    extra = {
        kind: stored[kind]["neural_growth"] - stored[kind]["plain_growth"] for kind in ("copies", "linked", "custom")
    }
    assert extra["copies"] < 2 * stored["shape_bytes"] and extra["linked"] < 2 * stored["shape_bytes"], stored
    assert extra["custom"] < 3 * stored["shape_bytes"], stored  # a resolution of its own: ~170 bytes per object more
    assert stored["shape_datablocks"] == 2, stored  # the cube's and the torus's


@needs_bpy
def test_older_files_panel_and_save(citizens):
    legacy = citizens["legacy"]
    assert legacy == {"adopted": True, "bytes": "\x89HDF stand-in", "viewport_resolution": 40}, legacy
    assert citizens["panel"] and citizens["saved_h5"]


@needs_blender
def test_blender_renders_neural_objects_at_render_resolution_from_the_command_line(built, server, citizens, tmp_path):
    """``blender -b scene.blend -f 1`` and ``-a`` (Debian's Blender 3.4, the legacy add-on enabled): the
    render-resolution surface is extracted once per render job, the frames are written."""
    env = {
        **os.environ,
        "BLENDER_USER_SCRIPTS": str(tmp_path / "scripts"),
        "BLENDER_USER_CONFIG": str(tmp_path / "config"),
    }
    blend = tmp_path / "scene.blend"
    script = Path(__file__).parent / "blender" / "render_scene_old_blender.py"
    made = subprocess.run(
        [
            "blender",
            "-b",
            "--factory-startup",
            "--python",
            str(script),
            "--",
            str(built[1]),
            str(server.data_dir),
            citizens["shape_id"],
            str(blend),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert made.returncode == 0 and made.stdout.strip(), made.stdout[-3000:] + made.stderr[-3000:]
    scene = json.loads([line for line in made.stdout.splitlines() if line.startswith("{")][-1])
    assert scene["render_resolution"] == 256
    line = "neural shapes: 1 surface(s) at 256^3 for the render"
    still = subprocess.run(
        ["blender", "-b", str(blend), "-f", "1"], capture_output=True, text=True, env=env, timeout=300
    )
    assert line in still.stdout, still.stdout[-3000:] + still.stderr[-3000:]
    assert (tmp_path / "frame_001.png").is_file()
    animation = subprocess.run(
        ["blender", "-b", str(blend), "-a"], capture_output=True, text=True, env=env, timeout=300
    )
    assert animation.stdout.count(line) == 1, animation.stdout[-3000:]  # once for the whole animation
    assert all((tmp_path / f"frame_00{n}.png").is_file() for n in (1, 2, 3))
    print(next(text for text in still.stdout.splitlines() if text.startswith(line)), file=sys.stderr)
