"""Mesh files written by backend.meshes.writing: OBJ text equal to printf's, readable by trimesh."""

import numpy as np
import pytest
import trimesh

from backend.meshes.writing import obj_bytes, write_mesh_file


def printf_obj(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None) -> bytes:
    """The reference: the same file through Python's own %-formatting, line by line."""
    lines = ["v %.8f %.8f %.8f" % tuple(v) for v in vertices]
    if normals is None:
        lines += ["f %d %d %d" % tuple(f + 1) for f in faces]
    else:
        lines += ["vn %.4f %.4f %.4f" % tuple(n) for n in normals]
        lines += ["f %d//%d %d//%d %d//%d" % tuple(np.repeat(f + 1, 2)) for f in faces]
    return ("\n".join(lines) + "\n").replace("-0.00000000 ", "0.00000000 ").encode()


@pytest.mark.parametrize("with_normals", [False, True])
def test_obj_text_is_printf_text(with_normals):
    rng = np.random.default_rng(0)
    vertices = rng.normal(size=(500, 3)) * np.array([1e-3, 1.0, 1e4])
    vertices[:4] = [[0, 0, 0], [-0.5, 12345.123456789, 1e-8], [-1e-9, 3.999999999, -7], [1e9, -1e9, 0.5]]
    faces = rng.integers(0, 500, size=(900, 3))
    faces[0] = [0, 9, 499]
    normals = rng.normal(size=(500, 3)) if with_normals else None
    written = obj_bytes(vertices, faces, normals)
    expected = printf_obj(vertices, faces, normals)
    # printf keeps the sign of a value that rounds to zero ("-0.00000000"); the writer drops it.
    assert written.replace(b"-0.0000", b"0.0000") == expected.replace(b"-0.0000", b"0.0000")


def test_trimesh_reads_back_positions_faces_and_normals(tmp_path):
    mesh = trimesh.creation.icosphere(subdivisions=2)
    path = tmp_path / "sphere.obj"
    write_mesh_file(path, mesh.vertices * 3 - 1, mesh.faces, mesh.vertex_normals)
    back = trimesh.load(path, process=False)
    assert np.allclose(back.vertices, mesh.vertices * 3 - 1, atol=1e-8)
    assert (back.faces == mesh.faces).all()
    assert np.allclose(back.vertex_normals, mesh.vertex_normals, atol=1e-4)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_other_formats_go_through_trimesh_and_bad_input_is_refused(tmp_path):
    mesh = trimesh.creation.box()
    write_mesh_file(tmp_path / "box.ply", mesh.vertices, mesh.faces)
    assert len(trimesh.load(tmp_path / "box.ply", process=False).faces) == 12
    with pytest.raises(ValueError, match="cannot write '.fbx'"):
        write_mesh_file(tmp_path / "box.fbx", mesh.vertices, mesh.faces)
    with pytest.raises(ValueError, match="NaN"):
        obj_bytes(np.full((3, 3), np.nan), np.array([[0, 1, 2]]))
    assert obj_bytes(np.zeros((0, 3)), np.zeros((0, 3), dtype=int)) == b""
    assert not (tmp_path / "box.fbx").exists()
