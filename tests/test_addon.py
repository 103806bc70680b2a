"""The Blender add-on: built zips, Blender's own validator, install into bpy, connection to a real service."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from blender_addon.client.connection import ConnectionSettings, check_connection
from tests.conftest import blender_script_report
from tests.service_server import ServerProcess

pytestmark = [pytest.mark.blender, pytest.mark.service]

bpy_spec = pytest.importorskip("importlib.util").find_spec("bpy")
needs_bpy = pytest.mark.skipif(bpy_spec is None, reason="the bpy wheel is not installed")


def test_zips_hold_the_package(built):
    extension, legacy = built
    names = set(zipfile.ZipFile(extension).namelist())
    assert {
        "blender_manifest.toml",
        "__init__.py",
        "registration.py",
        "client/client.py",
        "operators/__init__.py",
        "scene/neural_objects.py",
        "background/workers.py",
    } <= names
    assert not any("__pycache__" in n for n in names)
    assert {f"neural_shapes/{n}" for n in names} == set(zipfile.ZipFile(legacy).namelist())


@needs_bpy
def test_blender_validates_the_extension(built):
    validator = Path(bpy_spec.submodule_search_locations[0]).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py")
    result = subprocess.run(
        [sys.executable, str(next(validator)), "validate", str(built[0])], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_connection_check_without_blender(server, tmp_path):
    assert check_connection(ConnectionSettings(data_dir=str(server.data_dir))).startswith("connected: neural-shapes")
    assert "wrong token" in check_connection(ConnectionSettings(data_dir=str(server.data_dir), token="wrong"))
    assert check_connection(ConnectionSettings(data_dir=str(tmp_path))).startswith("not connected: no running service")


@needs_bpy
@pytest.mark.parametrize("token, connected", [("", True), ("wrong-token", False)])
def test_installed_extension_checks_the_service(built, server, tmp_path, token, connected):
    report = blender_script_report(
        "install_and_check.py", built[0], server.data_dir, token, resources=tmp_path / "blender"
    )
    assert report["panel"] and report["operator"]
    assert report["subpanels"] == dict.fromkeys(
        ("service", "convert", "object", "nf2vec"), "VIEW3D_PT_neural_shapes"
    ), report
    assert report["properties"] == {
        "Scene": {"neural_shapes": "PointerProperty:NeuralShapesSceneSettings"},
        "Object": {"neural_shapes": "PointerProperty:NeuralShapesObjectSettings"},
        "WindowManager": {"neural_shapes": "PointerProperty:NeuralShapesState"},
    }, report
    assert report["result"] == ["FINISHED"]  # at once: the check runs on a worker, its line comes later
    assert report["status"].startswith("connected" if connected else "not connected"), report
    assert connected or "wrong token" in report["status"]


@needs_bpy
def test_convert_selected_objects_and_round_trip_the_blend(built, server, tmp_path):
    other = ServerProcess(tmp_path / "other-service")  # another machine's service: has never seen the shapes
    try:
        report = blender_script_report(
            "convert_and_round_trip.py",
            built[0],
            server.data_dir,
            tmp_path / "scene.blend",
            other.data_dir,
            resources=tmp_path / "blender",
            timeout=600,
        )
    finally:
        other.terminate()
    assert report["stage"] == "converted 2 object(s)" and report["progress"] == 1.0, report
    assert report["objects"] == ["Cube (neural)", "Sphere (neural)"]
    assert all(error < 1e-5 for error in report["matrix_error"].values()), report[
        "matrix_error"
    ]  # the source's transform
    assert all(n > 1000 for n in report["faces"].values())
    assert report["after_reload"] == report["sizes"] and all(n > 30_000 for n in report["sizes"].values())
    assert (
        report["appended"] == report["sizes"]["Sphere (neural)"]
        and report["linked"] == report["sizes"]["Cube (neural)"]
    )
    assert "select at least one mesh object" in report["nothing_selected"] and report["unchanged"]
    assert "service:" not in report["nothing_selected"]  # a local refusal, not the service's
    assert (
        report["re_extract"]["new_id"]
        and 0 < report["re_extract"]["faces_after"] < report["re_extract"]["faces_before"]
    )
    preview = report["preview"]
    assert preview["size"] == [160, 100] and preview["left_half"] > 0.01 and preview["right_half"] > 0.01, preview
    assert report["preview_line"] == "rendered 2 neural object(s) into 'Neural Preview'"


@needs_bpy
def test_start_and_stop_service_buttons_and_service_down(built, tmp_path):
    command = str(Path(sys.executable).with_name("neural-shapes"))
    report = blender_script_report(
        "service_buttons.py", built[0], tmp_path / "data", command, resources=tmp_path / "blender"
    )
    assert report["down"] == "FINISHED" and report["down_status"].startswith("not connected: no running service"), (
        report
    )
    assert report["start"] == "FINISHED" and report["started_status"].startswith("started at http://127.0.0.1:"), report
    assert "; connected: neural-shapes" in report["started_status"], report
    assert report["stop"] == "FINISHED" and report["stopped_status"] == "service stopped (exit code 0)", report
    assert report["after_stop_status"].startswith("not connected: no running service"), report


@needs_bpy
def test_convert_errors_leave_the_scene_unchanged_and_cancel_creates_nothing(built, server, tmp_path):
    report = blender_script_report(
        "convert_errors_and_cancel.py", built[0], server.data_dir, resources=tmp_path / "blender"
    )
    assert "select at least one mesh object" in report["non_mesh"]
    assert "NoFaces: the mesh has no faces" in report["empty_mesh"] and report["unchanged"]
    assert "service:" not in report["non_mesh"] + report["empty_mesh"]  # local refusals, not the service's
    assert report["started"] == "FINISHED" and report["cancel"] == "FINISHED"
    assert report["stage"].startswith("cancelled") and report["neural_objects"] == 0, report


def test_version_mismatch_is_shown_plainly(tmp_path):
    """A service of another API version (a future one, served here by a stand-in) is refused with a clear line."""
    import http.server
    import threading

    class FutureService(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            body = json.dumps(
                {"status": "ok", "service": "neural-shapes", "version": "9.0.0", "api_version": 99}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), FutureService)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        status = check_connection(
            ConnectionSettings(url=f"http://127.0.0.1:{server.server_port}", token="t", data_dir=str(tmp_path))
        )
    finally:
        server.shutdown()
    assert status.startswith("not connected: the service speaks API version 99"), status
