"""Untrusted mesh files: scene sizes counted before anything is built, a vertex limit, bounded .npz
uploads, glTF side files only from the file's folder, and names from files never becoming paths."""

from __future__ import annotations

import base64
import io
import json
import os
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from backend.errors import NeuralShapesError
from backend.files import safe_file_stem
from backend.meshes.loading import load_mesh_bytes, load_mesh_file, normalise_mesh, vertex_limit
from backend.service.db import Database
from backend.service.errors import TooLarge
from backend.service.services.uploads import Uploads
from backend.shapes.shape_file import read_shape, write_shape
from tests.conftest import run_cli
from tests.malformed_files import default_family_shape, glb_bytes, gltf_parts, triangle_grid


def _one_line_error(call, match: str) -> str:
    with pytest.raises(NeuralShapesError, match=match) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_instanced_glb_refused_before_the_scene_is_built():
    vertices, faces = triangle_grid(1000)  # 1,000 faces, used by 100,000 nodes: 10^8 faces once placed
    nodes = [{"mesh": 0, "translation": [float(i), 0.0, 0.0]} for i in range(100_000)]
    data = glb_bytes(*gltf_parts(vertices, faces, nodes=nodes))
    started = time.process_time()  # CPU time: wall time on a loaded shared machine says little
    message = _one_line_error(
        lambda: load_mesh_bytes(data, "glb", name="forest"), "100,000,000 faces in 100,000 mesh instances"
    )
    assert time.process_time() - started < 1.0
    assert "limit of 2,000,000" in message
    tracemalloc.start()  # (slows Python down: timed above without it)
    try:
        _one_line_error(lambda: load_mesh_bytes(data, "glb", name="forest"), "100,000,000 faces")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 150 * 2**20, peak  # the JSON and its parse; 10^8 placed faces would be gigabytes


def test_instances_are_placed_by_their_node_transforms():
    vertices, faces = triangle_grid(8)
    nodes = [{"children": [1, 2]}, {"mesh": 0, "translation": [10.0, 0.0, 0.0]}, {"mesh": 0, "scale": [2.0, 2.0, 2.0]}]
    mesh = load_mesh_bytes(glb_bytes(*gltf_parts(vertices, faces, nodes=nodes, roots=[0])), "glb", name="pair")
    assert len(mesh.faces) == 16
    source = mesh.transform.to_source(mesh.vertices)
    assert np.isclose(source[:, 0].max(), 11.0) and np.isclose(source[:, 1].max(), 2.0)


def test_node_graph_must_be_a_forest():
    vertices, faces = triangle_grid(2)
    looped = [{"mesh": 0, "children": [1]}, {"mesh": 0, "children": [0]}]
    _one_line_error(
        lambda: load_mesh_bytes(glb_bytes(*gltf_parts(vertices, faces, nodes=looped, roots=[0])), "glb", name="loop"),
        "node 0 is reached twice",
    )


def test_vertex_limit():
    vertices, faces = triangle_grid(10)
    assert vertex_limit(10) == 30  # a triangle soup of 10 faces
    unused = np.concatenate([vertices, np.random.default_rng(0).random((31, 3))])
    _one_line_error(
        lambda: normalise_mesh(unused, faces, name="bloat", max_faces=10), "vertices, more than the limit of 30"
    )
    normalise_mesh(vertices, faces, name="ok", max_faces=10)
    # A bufferless accessor makes trimesh allocate its declared count in zeros: refused from the JSON.
    document, binary = gltf_parts(vertices, faces)
    document["accessors"].append({"componentType": 5126, "count": 10**10, "type": "VEC3"})
    _one_line_error(
        lambda: load_mesh_bytes(glb_bytes(document, binary), "glb", name="liar"),
        "accessor 2 declares 10,000,000,000 items",
    )


@pytest.fixture
def uploads(tmp_path) -> Uploads:
    return Uploads(
        db=Database(tmp_path / "index.sqlite3"), uploads_dir=tmp_path / "uploads", max_faces=100, max_bytes=2**20
    )


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def test_npz_bombs_refused_before_unpacking(uploads):
    vertices, faces = triangle_grid(10)
    assert uploads.add(_npz(vertices=vertices, faces=faces), format="npz", name="ok")["faces"] == 10
    # 10^6 zero faces compress to ~1 KB: refused by the zip directory's size, never unpacked.
    bomb = _npz(vertices=vertices, faces=np.zeros((10**6, 3), dtype=np.int64))
    assert len(bomb) < 50_000
    with pytest.raises(TooLarge, match="member faces unpacks to 24,000,128 bytes"):
        uploads.add(bomb, format="npz", name="bomb")
    # A header that lies: it declares 10^12 rows, the member holds a few bytes.
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<i8", "fortran_order": False, "shape": (10**12, 3)})
    liar = io.BytesIO()
    with zipfile.ZipFile(liar, "w") as archive:
        archive.writestr("vertices.npy", _npy(vertices))
        archive.writestr("faces.npy", header.getvalue() + b"\0" * 24)
    with pytest.raises(TooLarge, match="member faces has 1,000,000,000,000 rows"):
        uploads.add(liar.getvalue(), format="npz", name="liar")
    with pytest.raises(NeuralShapesError, match="lacks the array"):
        uploads.add(_npz(points=vertices), format="npz", name="missing")
    with pytest.raises(NeuralShapesError, match="member faces must be an integer array"):
        uploads.add(_npz(vertices=vertices, faces=faces.astype(np.float32)), format="npz", name="floats")
    assert len(list((uploads.dir).glob("*.npz"))) == 1  # nothing staged for the refused ones


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _write_gltf(folder: Path, uri: str) -> Path:
    """folder/model.gltf: a 4-face mesh whose buffer is the file ``uri``."""
    document, _ = gltf_parts(*triangle_grid(4))
    document["buffers"][0]["uri"] = uri
    path = folder / "model.gltf"
    path.write_text(json.dumps(document))
    return path


def test_gltf_reads_side_files_only_from_its_folder(tmp_path):
    _, binary = gltf_parts(*triangle_grid(4))
    secret = tmp_path / "secret.bin"
    secret.write_bytes(binary)
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "model.bin").write_bytes(binary)
    assert len(load_mesh_file(_write_gltf(folder, "model.bin")).faces) == 4
    for uri in ("../secret.bin", str(secret), "%2E%2E/secret.bin", f"file://{secret}", "sub/../../secret.bin"):
        _one_line_error(lambda: load_mesh_file(_write_gltf(folder, uri)), "not a file beside it|outside its own folder")
    os.symlink(secret, folder / "link.bin")
    _one_line_error(lambda: load_mesh_file(_write_gltf(folder, "link.bin")), "outside its own folder")
    _one_line_error(lambda: load_mesh_file(_write_gltf(folder, "absent.bin")), "does not exist")
    # Embedded buffers (data: URIs) need no folder.
    assert (
        len(
            load_mesh_file(
                _write_gltf(folder, "data:application/octet-stream;base64," + base64.b64encode(binary).decode())
            ).faces
        )
        == 4
    )
    # Uploads read no side files at all.
    document, _ = gltf_parts(*triangle_grid(4))
    document["buffers"][0]["uri"] = "model.bin"
    _one_line_error(lambda: load_mesh_bytes(glb_bytes(document), "glb", name="up"), "which is not read here")


@pytest.mark.parametrize(
    "name, expected",
    [
        ("/abs/x", "_abs_x"),
        ("../x", "_x"),
        ("a/b", "a_b"),
        ("..", "shape"),
        ("", "shape"),
        ("\0", "shape"),
        ("a\x01b\nc", "abc"),
        ("CON", "_CON"),
        ("c:\\x", "c__x"),
        ("chair_0001", "chair_0001"),
        ("é" * 200, "é" * 80),
    ],
)
def test_safe_file_stem(name, expected):
    assert safe_file_stem(name) == expected


def test_cli_writes_a_shape_named_as_a_path_inside_the_output_folder(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for file, name in (("a.h5", "../../evil"), ("b.h5", "/abs/evil")):
        write_shape(inputs / file, default_family_shape(name))
    assert read_shape(inputs / "a.h5").name == "../../evil"
    output = tmp_path / "deep" / "out"
    result = run_cli(
        "interpolate",
        inputs / "a.h5",
        inputs / "b.h5",
        "-o",
        output,
        "--space",
        "weights",
        "--count",
        "1",
        "--resolution",
        "16",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    [row] = json.loads(result.stdout)
    assert Path(row["output"]).parent == output and Path(row["output"]).name == "_.._evil-_abs_evil-t500.h5"
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == [
        "deep/out/_.._evil-_abs_evil-t500.h5",
        "deep/out/_.._evil-_abs_evil-t500.obj",
        "in/a.h5",
        "in/b.h5",
    ]
