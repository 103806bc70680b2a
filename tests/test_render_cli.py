"""Scenes, the Blender camera model, and the ``render`` / ``mesh`` commands end to end."""

import json

import numpy as np
import pytest
import trimesh
from PIL import Image
from typer.testing import CliRunner

from backend.cli import app
from backend.errors import NeuralShapesError
from backend.rendering.renderer import Camera, Scene, SceneObject, parse_size, render
from backend.rendering.scene import load_scene
from backend.shapes.architecture import Architecture, random_family
from backend.shapes.frame import Similarity
from backend.shapes.shape_file import NeuralShape, write_shape
from tests.fields import fit_sphere

CENTRE = np.array([1.0, 2.0, 3.0])
METRICS = {"surface_error": 0.01, "final_loss": 0.01, "chamfer": 0.01, "fscore": 0.9, "fit_seconds": 1.0, "steps": 300}
PROVENANCE = {"source_name": "sphere.obj", "source_sha256": "0" * 64, "tool_version": "test", "created": "2025-01-01"}


def _shape(weights=None, architecture=Architecture(), name="sphere") -> NeuralShape:
    """The fitted sphere (radius 0.5 normalised) with scale 0.5: radius 1 around CENTRE in its source frame."""
    return NeuralShape(
        name, architecture, "test", weights or fit_sphere(), Similarity(0.5, CENTRE), METRICS, PROVENANCE
    )


@pytest.fixture(scope="module")
def shape_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("shapes") / "sphere.h5"
    write_shape(path, _shape())
    return path


def _run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_blender_camera_model():
    camera = Camera(np.eye(4), lens=50.0)
    assert camera.rays(200, 100).pixel_size == pytest.approx(36 / 50 / 200)  # AUTO: width is larger
    assert camera.rays(100, 200).pixel_size == pytest.approx(36 / 50 / 200)  # AUTO: height is larger
    vertical = Camera(np.eye(4), sensor_fit="VERTICAL", sensor_height=24.0)
    assert vertical.rays(200, 100).pixel_size == pytest.approx(24 / 50 / 100)
    assert Camera(np.eye(4), type="ORTHO", ortho_scale=4.0).rays(200, 100).pixel_size == pytest.approx(4 / 200)
    look = Camera.look_at((0, -10, 0), (0, 0, 0))
    axes = look.matrix_world[:3, :3]
    assert np.allclose(axes.T @ axes, np.eye(3))
    assert np.allclose(-axes[:, 2], [0, 1, 0]) and np.allclose(axes[:, 1], [0, 0, 1])  # looks at the target, +Z up
    with pytest.raises(ValueError, match="clip"):
        Camera(np.eye(4), clip_start=2.0, clip_end=1.0)


def test_sizes():
    assert parse_size("640x480") == (640, 480)
    for bad in ("0x0", "512", "ax3", "100000x100000", "9000x9000"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_auto_framing_fills_the_view_and_empty_scene():
    result = render(Scene([SceneObject(_shape())]), 96, 64)
    mask = result.object_id == 0
    rows, cols = np.nonzero(mask)
    assert 0.2 < mask.mean() < 0.9
    assert abs(rows.mean() - 31.5) < 3 and abs(cols.mean() - 47.5) < 3
    assert rows.min() > 0 and rows.max() < 63  # framed with a margin
    empty = render(Scene([]), 32, 16)
    assert empty.rgba.shape == (16, 32, 4) and (empty.object_id == -1).all()
    zero = render(Scene([SceneObject(_shape())]), 0, 0)
    assert zero.rgba.shape == (0, 0, 4)


def test_mixed_architectures_are_refused():
    siren = Architecture(activation="sine", output_activation="none")
    other = _shape(random_family(siren, 0).initial_weights, siren)
    with pytest.raises(NeuralShapesError, match="one architecture"):
        render(Scene([SceneObject(_shape()), SceneObject(other)]), 8, 8)


def test_render_command(shape_file, tmp_path):
    png, passes = tmp_path / "out.png", tmp_path / "passes.npz"
    code, output = _run("render", shape_file, "-o", png, "--size", "80x60", "--passes", passes)
    assert code == 0, output
    image = Image.open(png)
    assert image.size == (80, 60) and image.mode == "RGBA"
    alpha = np.asarray(image)[..., 3]
    data = np.load(passes)
    assert ((alpha == 255) == (data["object_id"] == 0)).all() and (alpha == 255).mean() > 0.2
    code, output = _run(
        "render",
        shape_file,
        "-o",
        png,
        "--size",
        "40x40",
        "--camera-position",
        "1,2,13",
        "--look-at",
        "1,2,3",
        "--lens",
        "85",
    )
    assert code == 0, output
    alpha = np.asarray(Image.open(png))[..., 3]
    assert alpha[20, 20] == 255 and alpha[0, 0] == 0  # looking straight down at the sphere


def test_scene_file_with_csg(shape_file, tmp_path):
    scene = {
        "resolution": [64, 48],
        "camera": {"position": [1.0, -8.0, 3.0], "look_at": [1.0, 2.0, 3.0], "lens": 50},
        "objects": [
            {"shape": shape_file.name, "colour": [0.9, 0.2, 0.2]},
            {
                "shape": shape_file.name,
                "operation": "difference",
                "matrix_world": [[1, 0, 0, 1.0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
            },
        ],
        "settings": {"ambient": 0.3, "soft_shadows": True},
    }
    path = shape_file.parent / "scene.json"
    path.write_text(json.dumps(scene))
    loaded, size = load_scene(path)
    assert size == (64, 48) and loaded.settings.ambient == 0.3 and len(loaded.objects) == 2
    result = render(loaded, *size)
    left = result.object_id[:, :32]
    assert (left == 0).sum() > 50 and (result.object_id[:, 40:] == -1).all()  # the right part is cut away
    png = tmp_path / "scene.png"
    code, output = _run("render", "--scene", path, "-o", png)
    assert code == 0, output
    assert Image.open(png).size == (64, 48)


@pytest.mark.parametrize("method", ["sparse", "dense"])
def test_mesh_command(shape_file, tmp_path, method):
    out = tmp_path / f"{method}.obj"
    code, output = _run("mesh", shape_file, "-o", out, "--resolution", "64", "--method", method)
    assert code == 0, output
    mesh = trimesh.load(out, process=False)
    radius = np.linalg.norm(mesh.vertices - CENTRE, axis=1)
    assert np.abs(radius - 1.0).max() < 0.1  # source frame
    assert "vn " in out.read_text()
    assert mesh.volume > 0


def test_clear_errors(shape_file, tmp_path):
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 20)
    cases = [
        (("render", corrupt, "-o", tmp_path / "a.png"), "corrupt.h5"),
        (("mesh", corrupt, "-o", tmp_path / "a.obj"), "corrupt.h5"),
        (("render", shape_file, "-o", tmp_path / "a.png", "--size", "0x0"), "at least 1x1"),
        (("render", shape_file, "-o", tmp_path / "a.png", "--size", "99999x99999"), "out of range"),
        (("render", shape_file, "-o", tmp_path / "a.jpg"), ".png"),
        (("render", "-o", tmp_path / "a.png"), "nothing to render"),
        (("render", shape_file, "-o", tmp_path / "a.png", "--camera-position", "1,2"), "three numbers"),
        (("mesh", shape_file, "-o", tmp_path / "a.obj", "--method", "octree"), "sparse or dense"),
    ]
    for args, message in cases:
        code, output = _run(*args)
        assert code == 1 and message in output and output.count("error:") == 1, output
    bad = tmp_path / "bad.json"
    for content, message in (
        ("{", "not valid JSON"),
        ('{"objects": [], "lights": 1}', "lights: Extra inputs are not permitted"),
        ('{"objects": [{"shape": "missing.h5"}]}', "missing.h5"),
    ):
        bad.write_text(content)
        code, output = _run("render", "--scene", bad, "-o", tmp_path / "a.png")
        assert code == 1 and message in output, output
