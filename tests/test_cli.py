"""The neural-shapes command line end to end: fit, eval, mesh, info, and every bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from backend.shapes.shape_file import read_shape
from tests.conftest import SAMPLES, run_cli

QUICK = ["--samples", "60000", "--max-steps", "800", "--target", "0.006", "--resolution", "48"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """chair.stl (bundled) and a shifted, scaled sphere fitted in one CLI call."""
    folder = tmp_path_factory.mktemp("fit")
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=3.0)
    sphere.apply_translation([10.0, -4.0, 2.0])
    sphere.export(folder / "ball.ply")
    result = run_cli("fit", SAMPLES / "chair.stl", folder / "ball.ply", "-o", folder / "out", "--json", *QUICK)
    assert result.returncode == 0, result.stderr
    return folder, json.loads(result.stdout)


@pytest.mark.slow  # fits two meshes through the CLI (the fitted fixture)
def test_fit_writes_shapes_meshes_and_json(fitted):
    folder, rows = fitted
    assert [Path(r["source"]).name for r in rows] == ["chair.stl", "ball.ply"]
    for row in rows:
        assert set(row) >= {"source", "output", "surface_error", "fit_seconds", "steps"}
        assert Path(row["output"]).exists() and Path(row["mesh"]).exists()
        assert 0 < row["surface_error"] < 0.012 and row["steps"] <= 800 and row["fit_seconds"] > 0
    shape = read_shape(folder / "out" / "ball.h5")
    assert shape.provenance["source_name"] == "ball.ply" and len(shape.provenance["source_sha256"]) == 64
    assert shape.metrics["steps"] == rows[1]["steps"]
    # The reconstruction is back in the source frame: a sphere of radius 3 around (10, -4, 2).
    recon = trimesh.load(folder / "out" / "ball.obj", force="mesh")
    radii = np.linalg.norm(recon.vertices - [10.0, -4.0, 2.0], axis=1)
    assert abs(np.median(radii) - 3.0) < 0.1


@pytest.mark.slow  # fits two meshes through the CLI (the fitted fixture)
def test_eval_info_mesh(fitted, tmp_path):
    folder, rows = fitted
    shape_path = folder / "out" / "ball.h5"
    result = run_cli("eval", shape_path, "--mesh", folder / "ball.ply", "--json", "--resolution", "48")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    # Same frame (the stored transform), same resolution and seeds as at fit time: the same figures.
    for key in ("surface_error", "chamfer", "fscore"):
        assert metrics[key] == pytest.approx(rows[1][key], rel=1e-3), key

    info = run_cli("info", shape_path, "--json")
    assert info.returncode == 0, info.stderr
    summary = json.loads(info.stdout)
    assert summary["architecture"]["parameters"] == 7553 and summary["family_id"].startswith("default-")
    assert run_cli("info", shape_path).returncode == 0

    out = tmp_path / "ball64.ply"
    result = run_cli("mesh", shape_path, "-o", out, "--resolution", "64")
    assert result.returncode == 0, result.stderr
    mesh = trimesh.load(out, force="mesh")
    assert mesh.is_watertight and mesh.volume > 0  # closed, outward
    assert np.allclose(mesh.bounds.mean(axis=0), [10.0, -4.0, 2.0], atol=0.2)


def _write_binary_ply(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    header = (
        f"ply\nformat binary_little_endian 1.0\nelement vertex {len(vertices)}\nproperty float x\nproperty float y\n"
        f"property float z\nelement face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    records = np.empty(len(faces), dtype=[("n", "u1"), ("v", "<i4", (3,))])
    records["n"], records["v"] = 3, faces
    path.write_bytes(header.encode() + vertices.astype("<f4").tobytes() + records.tobytes())


def _height_field(n: int) -> tuple[np.ndarray, np.ndarray]:
    """A bumpy n x n grid surface: 2 (n - 1)^2 triangles."""
    x, y = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n), indexing="ij")
    vertices = np.stack([x, y, 0.1 * np.sin(6 * x) * np.cos(5 * y)], -1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(n - 1), np.arange(n - 1), indexing="ij")
    a, b, c, d = (i * n + j), (i + 1) * n + j, i * n + j + 1, (i + 1) * n + j + 1
    faces = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)])
    return vertices, faces


def bad_inputs(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, expected words in the one-line error)."""
    cases = {}
    (folder / "gone.obj").symlink_to(folder / "does-not-exist.obj")
    cases["unreadable"] = (folder / "gone.obj", "cannot read file")
    (folder / "notes.xyz").write_text("1 2 3\n")
    cases["unknown format"] = (folder / "notes.xyz", "unknown mesh format")
    (folder / "empty.obj").write_text("")
    cases["empty"] = (folder / "empty.obj", "empty")
    (folder / "nan.obj").write_text("v 0 0 0\nv 1 0 0\nv nan 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n")
    cases["nan"] = (folder / "nan.obj", "NaN or infinite")
    (folder / "flat.obj").write_text("v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\nf 3 2 1\n")
    cases["degenerate"] = (folder / "flat.obj", "degenerate")
    (folder / "cloud.ply").write_text(
        "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\nend_header\n0 0 0\n1 0 0\n0 1 0\n"
    )
    cases["point cloud"] = (folder / "cloud.ply", "point cloud without faces")
    (folder / "garbage.stl").write_bytes(b"\x00\xff" * 50)
    cases["corrupt"] = (folder / "garbage.stl", "garbage.stl")
    vertices, faces = _height_field(1030)
    _write_binary_ply(folder / "huge.ply", vertices, faces)
    assert len(faces) > 2_000_000
    cases["huge"] = (folder / "huge.ply", "more than the limit of 2,000,000")
    return cases


def test_every_bad_input_fails_clearly_and_others_still_convert(tmp_path):
    cases = bad_inputs(tmp_path)
    good = tmp_path / "good.stl"
    trimesh.creation.box().export(good)
    out = tmp_path / "out"
    result = run_cli("fit", *[path for path, _ in cases.values()], good, "-o", out, "--json", *QUICK)
    assert result.returncode == 1
    rows = {Path(r["source"]).name: r for r in json.loads(result.stdout)}
    assert rows["good.stl"]["output"] and Path(rows["good.stl"]["output"]).exists()
    for name, (path, expected) in cases.items():
        row = rows[path.name]
        assert row["output"] is None and expected in row["error"] and path.name in row["error"], (name, row)
        assert "\n" not in row["error"]
        assert f"failed: {row['error']}" in " ".join(result.stderr.split()), name
    assert sorted(p.name for p in out.iterdir()) == ["good.h5", "good.obj"]  # nothing half-written, no temporaries


def test_single_bad_input_exit_code_and_message(tmp_path):
    (tmp_path / "nan.obj").write_text("v 0 0 0\nv 1 0 0\nv inf 1 0\nf 1 2 3\n")
    result = run_cli("fit", tmp_path / "nan.obj", "-o", tmp_path / "out")
    assert result.returncode == 1 and "nan.obj" in result.stderr and "NaN or infinite" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("info", tmp_path / "nan.obj")
    assert result.returncode == 1 and "not a valid neural shape file" in result.stderr
    result = run_cli("fit", tmp_path / "empty-dir-that-is-missing", "-o", tmp_path / "out")
    assert result.returncode == 1


def test_help_on_every_command():
    from typer.testing import CliRunner

    from backend.cli import app

    runner = CliRunner()
    for command in ("fit", "eval", "mesh", "info", "render", "serve"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output, command


def test_commands_run_in_process_leave_the_interpreter_to_exit_cleanly(tmp_path):
    """In-process callers (CliRunner, scripts) keep the interpreter's own garbage collection and teardown:
    only the program (NeuralShapesApp) changes them. Freezing the collector inside a process that later
    finalises h5py's objects from a failed read crashed it at exit."""
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 20)
    script = (
        "from typer.testing import CliRunner; from backend.cli import app;"
        f"result = CliRunner().invoke(app, ['render', {str(corrupt)!r}, '-o', {str(tmp_path / 'a.png')!r}]);"
        "assert result.exit_code == 1, result.output"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
