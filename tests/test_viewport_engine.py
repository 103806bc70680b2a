"""The neural viewport in Blender: the Neural Shapes render engine registered in bpy 5.0.1, its camera math
against Blender's own camera projection, its worker's frames timed and matched with F12's image; and the
real thing in a Blender 3.4 window under Xvfb (Rendered shading, coarse then full frames, a screenshot)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.conftest import ROOT, blender_script_report

pytestmark = [pytest.mark.blender, pytest.mark.service, pytest.mark.slow]

needs_bpy = pytest.mark.skipif(
    pytest.importorskip("importlib.util").find_spec("bpy") is None, reason="the bpy wheel is not installed"
)
needs_window = pytest.mark.skipif(
    shutil.which("blender") is None or shutil.which("xvfb-run") is None,
    reason="needs Debian's blender and xvfb-run (scripts/test installs both)",
)
SHAPE = ROOT / "tests" / "data" / "thing_v1.h5"


@pytest.fixture(scope="module")
def shape_id(server):
    return server.client.import_shape(SHAPE.read_bytes(), name="thing").id


@needs_bpy
def test_engine_camera_math_frames_and_f12(built, server, shape_id, tmp_path):
    report = blender_script_report(
        "viewport_engine.py", built[0], server.data_dir, shape_id, tmp_path, resources=tmp_path / "blender"
    )
    assert report["engines"] == ["NEURAL_SHAPES"] and report["scene_engine"] == "NEURAL_SHAPES"
    for check in report["camera_checks"]:  # Blender's calc_matrix_camera read back as the camera it came from
        if check["shift"] == [0.0, 0.0]:
            assert check["size"] == check["expected_size"], check
            assert check["ndc_rect"] == pytest.approx([-1, -1, 1, 1], abs=1e-5), check
        else:  # lens shift: a wider centred image that covers the shifted frame
            assert check["size"][0] > check["expected_size"][0] and check["size"][1] > check["expected_size"][1]
            left, bottom, right, top = check["ndc_rect"]
            assert left < -1.2 and right >= 1 - 1e-5 and bottom <= -1 + 1e-5 and top > 1.1, check
        widen = check["size"][0] / check["expected_size"][0]  # the same pixel size, over a wider image if shifted
        if check["kind"] == "PERSP":
            assert check["lens"] * widen == pytest.approx(check["expected_lens"], rel=1e-5), check
        else:
            assert check["ortho_scale"] / widen == pytest.approx(check["expected_ortho_scale"], rel=1e-5), check
        assert check["clip"] == pytest.approx([0.05, 80.0], rel=1e-4) and check["depth_offset"] == 0.0, check
    f12 = report["f12"]
    assert f12["objects"] == 1 and f12["coverage"] > 0.05, f12
    assert f12["disagree"] < 0.01, f12  # the viewport's frame through the camera is F12's image
    near, far = f12["depth_range"]
    assert 0 < near <= far < 1 and f12["miss_depth"] == 1.0, f12
    times = report["frame_times"]
    assert times["256_coarse"]["pixels"] == [64, 64] and times["512_full"]["pixels"] == [512, 512], times
    print("\nviewport worker frame times (bpy 5.0.1, CPU service):", json.dumps(times), json.dumps(f12))


@needs_window
@pytest.mark.parametrize("view", ["PERSP", "CAMERA"])
def test_rendered_viewport_in_a_blender_window(built, server, shape_id, tmp_path, view):
    """Debian's Blender 3.4 with a window (Xvfb): Rendered shading with the engine gives coarse frames while
    the view orbits and a full one once it is still. Through a camera with lens shift, the frame zoomed and
    panned (an off-centre frustum), the frames are wider centred images that cover the region."""
    screenshot = tmp_path / "viewport.png"
    env = {
        **os.environ,
        "BLENDER_USER_SCRIPTS": str(tmp_path / "scripts"),
        "BLENDER_USER_CONFIG": str(tmp_path / "config"),
    }
    command = [
        "xvfb-run", "-a", "-s", "-screen 0 1280x800x24",
        "blender", "--factory-startup", "-p", "0", "0", "640", "560",
        "--python", str(ROOT / "tests" / "blender" / "viewport_window.py"),
        "--", str(built[1]), str(server.data_dir), shape_id, str(screenshot), "--view", view,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    lines = [line for line in result.stdout.splitlines() if line.startswith("VIEWPORT_REPORT ")]
    assert lines, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(lines[-1].removeprefix("VIEWPORT_REPORT "))
    assert "error" not in report, report["error"]
    assert report["engine"] == "NEURAL_SHAPES"
    frames = report["frames"]
    levels = [f["level"] for f in frames]
    assert levels[0] == "coarse" and levels[-1] == "full", levels
    width, height = report["region"]
    full = frames[-1]
    coarse = [f for f in frames if f["level"] == "coarse"]
    if view == "PERSP":
        assert len(coarse) > 5, levels  # the orbit: a coarse frame for each change that meets an idle worker
        assert (full["width"], full["height"]) == (width, height), (full, report["region"])
        assert all(abs(f["width"] - width / 4) <= 1 and abs(f["height"] - height / 4) <= 1 for f in coarse), coarse
    else:
        assert full["width"] > width and full["height"] > height, (full, report["region"])
    assert screenshot.stat().st_size > 10_000
    seconds = {level: sorted(f["seconds"] for f in frames if f["level"] == level) for level in ("coarse", "full")}
    medians = {level: round(values[len(values) // 2], 3) for level, values in seconds.items()}
    print(
        f"\nviewport in Blender 3.4 (Xvfb), {view}, region {width} x {height}: {len(frames)} frames, medians {medians}"
    )
