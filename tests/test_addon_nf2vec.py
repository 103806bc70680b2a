"""The add-on's nf2vec operators, installed into the bpy module, against a real service started with the
tiny test toolkit (``--nf2vec-model``), plus one started without a model."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace

import numpy as np
import pytest

from backend import __version__
from backend.shapes.shape_file import shape_to_bytes
from tests.conftest import blender_script_report, run_cli
from tests.nf2vec_toolkit import build_toolkit
from tests.service_server import ServerProcess
from tests.test_service_nf2vec import nf2vec_server

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="the bpy wheel is not installed"),
    pytest.mark.blender,
    pytest.mark.service,
]


def close(a, b, tolerance: float = 1e-4) -> bool:
    return bool(np.allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), atol=tolerance))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("nf2vec-addon")
    _, shapes, _ = build_toolkit(root / "toolkit")
    built = run_cli("build-addon", "-o", root / "addon")
    assert built.returncode == 0, built.stderr
    server = nf2vec_server(root / "data", root / "toolkit" / "model")
    no_model = ServerProcess(root / "no-model", "--nf2vec-model", str(root / "missing"))
    try:
        client = server.client
        ids = {shape.name: client.import_shape(shape_to_bytes(shape)).id for shape in shapes}
        ids["sphere again"] = client.import_shape(shape_to_bytes(shapes[0]), name="sphere again").id
        ids["foreign"] = client.import_shape(
            shape_to_bytes(replace(shapes[0], name="foreign", family_id="random-7"))
        ).id
        result = blender_script_report(
            "nf2vec_operators.py",
            root / "addon" / f"neural_shapes-{__version__}.zip",
            server.data_dir,
            json.dumps(ids),
            no_model.data_dir,
            resources=root / "blender",
            timeout=600,
        )
    finally:
        server.stop()
        no_model.stop()
    return {**result, "ids": ids}


def test_info_and_adding_library_shapes(report):
    assert report["info"] == "FINISHED" and report["nf2vec_line"].startswith("nf2vec-")
    added = report["added"]
    assert added["names"] == ["sphere (neural)", "cube (neural)"] and added["ids"] == [
        report["ids"]["sphere"],
        report["ids"]["cube"],
    ]
    assert close(added["sphere_centre"], [-3, 0, 0], 0.1) and close(
        added["cube_centre"], [3, 0, 1], 0.1
    )  # centred at the cursor


def test_interpolate_places_in_betweens_between_the_two(report):
    start, end = np.array(report["sphere_location"]), np.array(report["cube_location"])
    weights = report["interpolate_weights"]
    assert weights["stage"] == "interpolated 3 object(s)", weights
    assert weights["objects"] == [f"sphere-cube-t{t} (neural)" for t in ("250", "500", "750")]
    assert close(weights["locations"], [start + t * (end - start) for t in (0.25, 0.5, 0.75)])
    embedding = report["interpolate_embedding"]
    assert embedding["objects"] == ["sphere-cube-t300 (neural)"] and close(
        embedding["locations"], [start + 0.3 * (end - start)]
    )


def test_generate_places_a_row_at_the_cursor(report):
    generated = report["generate"]
    assert generated["stage"] == "generated 2 object(s)", generated
    assert generated["objects"] == ["generated-round-1-0 (neural)", "generated-round-1-1 (neural)"]
    (x0, y0, z0), (x1, y1, z1) = generated["locations"]
    assert close([y0, y1, z0, z1], [5, 5, 0, 0]) and x0 < 0 < x1 and close(x0 + x1, 0)


def test_complete_places_the_whole_over_the_input(report):
    neural = report["complete_neural"]
    assert neural["objects"] == ["cone-completed (neural)"] and close(
        neural["locations"], [np.array(report["cone_matrix"])[:3, 3]]
    )
    mesh = report["complete_mesh"]
    assert mesh["stage"] == "completed 1 object(s)" and mesh["objects"] == ["Sphere-completed (neural)"], mesh
    assert close(report["completed_matrix"], report["plain_matrix"])


def test_cancel_adds_nothing(report):
    assert (
        report["cancel"] == "FINISHED"
        and report["cancelled_stage"].startswith("cancelled")
        and report["cancel_unchanged"]
    ), report


def test_similar_and_classify_fill_the_panel_lists(report):
    assert report["similar"] == "FINISHED" and report["similar_to"] == "sphere (neural)"
    assert report["similar_line"] == "3 shape(s) similar to sphere (neural)"
    rows = report["similar_rows"]
    assert (
        len(rows) == 3
        and rows[0][0] == "sphere again"
        and rows[0][2] == report["ids"]["sphere again"]
        and rows[0][1] < 1e-4
    )
    assert [r[1] for r in rows] == sorted(r[1] for r in rows)
    assert report["classify"] == "FINISHED" and {name for name, _ in report["classes"]} == {"round", "boxy"}
    assert abs(sum(p for _, p in report["classes"]) - 1) < 1e-4


def test_errors_are_reports_and_leave_the_scene_unchanged(report):
    assert "select exactly two neural objects (1 selected)" in report["one_selected"]
    assert "make a neural object active" in report["classify_plain"]
    assert "service:" not in report["one_selected"] + report["classify_plain"]  # local refusals, not the service's
    assert report["foreign"].startswith("failed: ") and "is of model family random-7" in report["foreign"]
    assert report["no_model_info"] == "FINISHED" and report["no_model_line"].startswith("service: no nf2vec model")
    assert report["no_model_generate"].startswith("failed: ") and "no nf2vec model" in report["no_model_generate"]
    assert report["no_model_complete"].startswith("failed: ") and "no nf2vec model" in report["no_model_complete"]
    assert report["unchanged"]
