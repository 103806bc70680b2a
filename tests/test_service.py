"""The local HTTP service end to end: a real ``neural-shapes serve`` in a subprocess, driven over HTTP
with the add-on's stdlib client (and raw requests for what a well-behaved client never sends)."""

from __future__ import annotations

import http.client
import io
import json
import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pytest
import trimesh

from backend.shapes.shape_file import shape_from_bytes
from blender_addon.client import Client, ServiceError
from tests.service_server import QUICK_FIT, SLOW_FIT, ServerProcess

pytestmark = pytest.mark.service

BOX_EXTENTS = (1.0, 0.6, 0.8)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("service") / "data", "--max-upload-mb", "1")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def fitted(client, box_mesh, sphere_mesh, tmp_path_factory):
    """A box (raw arrays), a shifted sphere (.npz) and the box again (OBJ file) fitted in one job."""
    box = client.upload_mesh(box_mesh.vertices, box_mesh.faces, name="box")
    ball = trimesh.creation.icosphere(subdivisions=2, radius=2.0).apply_translation([5.0, 0.0, -1.0])
    buffer = io.BytesIO()
    np.savez(buffer, vertices=ball.vertices.astype(np.float32), faces=ball.faces.astype(np.int32))
    _, _, data = client.request(
        "POST",
        "/v1/uploads",
        query={"format": "npz", "name": "ball"},
        body=buffer.getvalue(),
        content_type="application/octet-stream",
    )
    ball_upload = json.loads(data)
    path = tmp_path_factory.mktemp("meshes") / "box_file.obj"
    box_mesh.export(path)
    box_file = client.upload_mesh_file(path)
    assert (box.vertices, box.faces, box_file.name) == (8, 12, "box_file")
    job = client.start_fit([box.id, ball_upload["id"], box_file.id], settings=QUICK_FIT, resolution=32)
    assert job.state in ("queued", "running") and job.kind == "fit"
    seen = []
    job = client.wait(job.id, timeout=120, poll=0.1, on_progress=lambda j: seen.append((j.state, j.progress)))
    assert job.state == "succeeded", job.error
    progress = [p for _, p in seen]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert len(job.shape_ids) == 3
    return job


def raw(
    server, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, dict]:
    """A request with exactly these headers (no token unless given); returns status and JSON detail."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        if body is not None and "Content-Length" not in (headers or {}):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read()
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, {"raw": data}
    finally:
        conn.close()


def authed(server, **extra) -> dict[str, str]:
    return {"Host": f"127.0.0.1:{server.port}", "Authorization": f"Bearer {server.client.token}", **extra}


def status_of(call) -> int:
    with pytest.raises(ServiceError) as error:
        call()
    return error.value.status


# --- service basics ------------------------------------------------------------------------------


def test_the_client_checks_the_version(client):  # the routes themselves: tests/test_api_routes.py
    assert client.check_version().api_version == 1


def test_token_file_is_private_and_service_file_names_the_url(server):
    token = server.data_dir / "token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and len(token.read_text().strip()) >= 32
    assert Client.from_running_service(server.data_dir).base_url == server.url


# --- the main path -------------------------------------------------------------------------------


def test_the_api_and_render_scene_refuse_a_bad_scene_alike(server, client, fitted, tmp_path):
    """POST /v1/render and ``render --scene`` read one scene schema: the same bad scene, the same message."""
    from backend.errors import NeuralShapesError
    from backend.rendering.scene import load_scene

    shape_id = fitted.shape_ids[0]
    (tmp_path / "box.h5").write_bytes(client.download_shape(shape_id))
    bad_scenes = (
        ({"operation": "xor"}, {}, 422),  # the form: pydantic's message
        ({"operation": "smooth_union"}, {}, 400),  # what the form cannot say: build_scene's
        ({"matrix_world": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]}, {}, 400),
        ({}, {"camera": {"position": [1, 2, 3]}}, 400),
        ({}, {"lights": 1}, 422),
    )
    for entry, extra, status in bad_scenes:
        answer = raw(
            server,
            "POST",
            "/v1/render",
            authed(server, **{"Content-Type": "application/json"}),
            json.dumps({"objects": [{"shape": shape_id, **entry}], **extra, "width": 8, "height": 8}).encode(),
        )
        assert answer[0] == status, answer
        path = tmp_path / "scene.json"
        path.write_text(json.dumps({"objects": [{"shape": "box.h5", **entry}], **extra}))
        with pytest.raises(NeuralShapesError) as refused:
            load_scene(path)
        assert str(refused.value) == f"{path}: {answer[1]['detail'].removeprefix('body.')}"


def test_fit_mesh_render_download(client, fitted):
    box_id, ball_id, box_file_id = fitted.shape_ids
    shapes = {s.id: s for s in client.shapes()}
    assert {box_id, ball_id, box_file_id} <= set(shapes)
    box = client.shape(box_id)
    assert box.name == "box" and box.job_id == fitted.id and box.metrics["surface_error"] < 0.05
    assert box.transform["scale"] > 0 and box.provenance["source_sha256"] == box.source_sha256

    mesh = client.mesh(box_id, resolution=64)
    vertices, faces, normals = mesh.numpy()
    assert len(faces) > 100 and vertices.shape == normals.shape
    # Source frame = the stored similarity applied to the normalised-frame mesh; inside the sampling cube.
    normalised = client.mesh(box_id, resolution=64, frame="normalised").numpy()[0]
    scale, centre = box.transform["scale"], np.array(box.transform["centre"])
    assert np.allclose(vertices, normalised / scale + centre, atol=1e-5)
    assert np.abs(normalised).max() <= 1.0 + 1e-4 and np.all(vertices.max(axis=0) > np.array(BOX_EXTENTS) / 2 - 0.1)
    ball = client.mesh(ball_id, resolution=48, method="dense").numpy()[0]
    assert abs(np.median(np.linalg.norm(ball - [5.0, 0.0, -1.0], axis=1)) - 2.0) < 0.15
    _, headers, data = client.request(
        "GET", f"/v1/shapes/{box_id}/mesh", query={"resolution": 32, "format": "obj", "frame": "normalised"}
    )
    obj = trimesh.load(io.BytesIO(data), file_type="obj", force="mesh")
    assert len(obj.faces) == int(headers["x-face-count"]) and np.abs(obj.vertices).max() <= 1.0 + 1e-4

    image = client.render([{"shape": box_id}], width=64, height=48)
    assert image.data.startswith(b"\x89PNG\r\n\x1a\n") and (image.width, image.height) == (64, 48)
    floats = client.render(
        [
            {"shape": box_id},
            {
                "shape": ball_id,
                "matrix_world": [[1, 0, 0, -2.7], [0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1]],
                "operation": "difference",
            },
        ],
        width=32,
        height=32,
        format="rgba",
        camera={"position": [3, -3, 2], "look_at": [0, 0, 0]},
    )
    cut_box = (np.frombuffer(floats.data, "<f4").reshape(32, 32, 4)[..., 3] == 1).sum()
    whole_box = (
        np.frombuffer(
            client.render(
                [{"shape": box_id}],
                width=32,
                height=32,
                format="rgba",
                camera={"position": [3, -3, 2], "look_at": [0, 0, 0]},
            ).data,
            "<f4",
        ).reshape(32, 32, 4)[..., 3]
        == 1
    ).sum()
    assert 0 < cut_box < whole_box  # the ball, moved to (2.3, 0, 0), cuts away the box's +x end
    passes = np.load(
        io.BytesIO(client.render([{"shape": ball_id}], width=16, height=16, format="npz").data), allow_pickle=False
    )
    assert passes["depth"].shape == (16, 16) and (passes["object_id"] == 0).any()

    data = client.download_shape(box_file_id)
    shape = shape_from_bytes(data)
    assert shape.name == "box_file" and shape.architecture.parameter_count == 7553


def test_import_valid_and_corrupted_files(client, fitted, tmp_path):
    good = client.download_shape(fitted.shape_ids[0])
    before = len(client.shapes(limit=1000))
    imported = client.import_shape(good, name="imported box")
    assert (
        imported.name == "imported box" and shape_from_bytes(client.download_shape(imported.id)).name == "imported box"
    )

    path = tmp_path / "nan.h5"
    path.write_bytes(good)
    with h5py.File(path, "r+") as f:
        f["weights"][0] = np.nan
    wrong_format = tmp_path / "other.h5"
    with h5py.File(wrong_format, "w") as f:
        f.attrs["format"] = "something-else"
    for bad, expected in (
        (good[: len(good) // 2], "not a valid neural shape file"),
        (b"\x89HDF\r\n\x1a\n" + os.urandom(2000), "not a valid neural shape file"),
        (b"", "empty upload"),
        (path.read_bytes(), "NaN"),
        (wrong_format.read_bytes(), "not a neural shape file"),
    ):
        with pytest.raises(ServiceError) as error:
            client.import_shape(bad)
        assert error.value.status == 400 and expected in error.value.detail
    assert len(client.shapes(limit=1000)) == before + 1
    client.delete_shape(imported.id)
    assert status_of(lambda: client.shape(imported.id)) == 404


# --- refusals ------------------------------------------------------------------------------------


def test_token_host_and_origin_checks(server):
    host = {"Host": f"127.0.0.1:{server.port}"}
    assert raw(server, "GET", "/v1/shapes", host)[0] == 401
    assert raw(server, "GET", "/v1/shapes", {**host, "Authorization": "Bearer wrong"})[0] == 401
    assert raw(server, "GET", "/v1/shapes", {**host, "Authorization": f"Basic {server.client.token}"})[0] == 401
    assert raw(server, "GET", "/no/such/path", host)[0] == 401  # nothing is learned without the token
    for foreign in ("evil.example", f"evil.example:{server.port}", "127.0.0.1.evil.example", "localhost.:80", ""):
        status, body = raw(server, "GET", "/health", {"Host": foreign} if foreign else {})
        assert status == 400 and (not foreign or "loopback" in body["detail"]), (
            foreign
        )  # no Host: refused by the HTTP parser
        assert raw(server, "GET", "/v1/shapes", authed(server, Host=foreign or "x"))[0] == 400
    assert raw(server, "GET", "/v1/shapes", authed(server, Host=f"[::1]:{server.port}"))[0] == 200
    status, body = raw(server, "GET", "/v1/shapes", authed(server, Origin="http://evil.example"))
    assert status == 403 and "cross-origin" in body["detail"]


def test_oversized_and_malformed_uploads(server, client):
    binary = authed(server, **{"Content-Type": "application/octet-stream"})
    # over the 1 MiB limit, by Content-Length and streamed (chunked, no length)
    status, body = raw(server, "POST", "/v1/uploads?format=raw&vertex_count=3", binary, b"\0" * (2 * 1024 * 1024))
    assert status == 413 and "limit" in body["detail"]
    chunk = b"\0" * 65536
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(24)) + b"0\r\n\r\n"
    status, body = raw(
        server, "POST", "/v1/uploads?format=raw&vertex_count=3", {**binary, "Transfer-Encoding": "chunked"}, chunked
    )
    assert status == 413
    status, _ = raw(
        server,
        "POST",
        "/v1/jobs/fit",
        authed(server, **{"Content-Type": "application/json"}),
        b"[" + b"1," * 3_000_000 + b"1]",
    )
    assert status == 413

    triangle = (
        np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype="<f4").tobytes()
        + np.array([[0, 1, 2]], dtype="<i4").tobytes()
    )
    nan = (
        np.array([[0, 0, 0], [1, 0, 0], [np.nan, 1, 0]], dtype="<f4").tobytes()
        + np.array([[0, 1, 2]], dtype="<i4").tobytes()
    )
    bad_index = triangle[:36] + np.array([[0, 1, 7]], dtype="<i4").tobytes()
    pickled = io.BytesIO()
    np.savez(pickled, vertices=np.array([object()], dtype=object), faces=np.zeros((1, 3), np.int32))
    no_faces = io.BytesIO()
    np.savez(no_faces, vertices=np.zeros((3, 3)))
    cases = [
        ("format=raw&vertex_count=3", triangle[:-4], 400, "does not hold"),
        ("format=raw", triangle, 400, "vertex_count"),
        ("format=raw&vertex_count=3", nan, 400, "NaN"),
        ("format=raw&vertex_count=3", bad_index, 400, "face indices"),
        ("format=raw&vertex_count=0", triangle, 422, "vertex_count"),
        ("format=npz", pickled.getvalue(), 400, "npz"),
        ("format=npz", no_faces.getvalue(), 400, "faces"),
        ("format=npz", b"PK\x03\x04garbage", 400, "npz"),
        ("format=obj", b"this is not an obj\nf 1 2 9\n", 400, "mesh"),
        ("format=stl", os.urandom(300), 400, ""),
        ("format=gltf", b"{}", 400, "unknown mesh format"),
        ("format=exe", triangle, 400, "unknown mesh format"),
        ("format=raw&vertex_count=3", b"", 400, "empty"),
    ]
    for query, body, expected, words in cases:
        status, answer = raw(server, "POST", f"/v1/uploads?{query}", binary, body)
        assert status == expected and words in answer["detail"], (query, status, answer)
    status, answer = raw(
        server,
        "POST",
        "/v1/uploads?format=raw&vertex_count=3",
        authed(server, **{"Content-Type": "text/plain"}),
        triangle,
    )
    assert status == 415

    json_headers = authed(server, **{"Content-Type": "application/json"})
    assert raw(server, "POST", "/v1/jobs/fit", json_headers, b"{not json")[0] == 422
    assert (
        raw(server, "POST", "/v1/jobs/fit", authed(server, **{"Content-Type": "text/plain"}), b'{"uploads": []}')[0]
        == 415
    )
    status, answer = raw(
        server, "POST", "/v1/jobs/fit", json_headers, json.dumps({"uploads": ["0" * 32], "bogus": 1}).encode()
    )
    assert status == 422 and "bogus" in answer["detail"]
    status, answer = raw(
        server,
        "POST",
        "/v1/jobs/fit",
        json_headers,
        json.dumps({"uploads": ["0" * 32], "settings": {"samples": -5}}).encode(),
    )
    assert status == 422 and "samples" in answer["detail"]
    body = {"uploads": ["0" * 32], "settings": {"open_meshes": "sideways"}}  # shell or solid
    status, answer = raw(server, "POST", "/v1/jobs/fit", json_headers, json.dumps(body).encode())
    assert status == 422 and "open_meshes" in answer["detail"]
    for family in ("/etc/passwd", "random:x", "../default.h5"):  # families are names, never paths
        status, answer = raw(
            server, "POST", "/v1/jobs/fit", json_headers, json.dumps({"uploads": ["0" * 32], "family": family}).encode()
        )
        assert status == 422 and "family" in answer["detail"], (family, answer)
    assert status_of(lambda: client.start_fit(["0" * 32])) == 404
    assert status_of(lambda: client.start_fit(["../../etc"])) == 400
    assert status_of(lambda: client.render([{"shape": "0" * 32}])) == 404
    assert status_of(lambda: client.render([], width=8, height=8)) == 422
    assert status_of(lambda: client.mesh("0" * 32)) == 404


def test_unknown_and_path_traversal_ids(server, client, fitted):
    unknown = "0123456789abcdef" * 2
    for call in (
        lambda: client.shape(unknown),
        lambda: client.job(unknown),
        lambda: client.cancel(unknown),
        lambda: client.delete_shape(unknown),
        lambda: client.download_shape(unknown),
    ):
        assert status_of(call) == 404
    sentinel = server.data_dir / "index.sqlite3"
    for bad in (
        "../index.sqlite3",
        "..%2Findex.sqlite3",
        "%2e%2e%2ftoken",
        "..\\token",
        "ABCDEF" * 6,
        "0" * 31,
        "0" * 33,
        "../../etc/passwd",
    ):
        for path in (f"/v1/shapes/{bad}", f"/v1/shapes/{bad}/file", f"/v1/jobs/{bad}", f"/v1/uploads/{bad}"):
            status, _ = raw(server, "GET", path, authed(server))
            assert status in (400, 404), (path, status)
        status, _ = raw(server, "DELETE", f"/v1/shapes/{bad}", authed(server))
        assert status in (400, 404)
    assert sentinel.exists() and (server.data_dir / "token").exists()
    assert len(client.shapes(limit=1000)) >= 3


# --- jobs under load -----------------------------------------------------------------------------


def _wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def wait_for(client: Client, job_id: str, state: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.job(job_id)
        if job.state == state:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} is {client.job(job_id).state}, not {state}")


def test_cancel_and_concurrent_requests_while_fitting(server, client, box_mesh, fitted):
    uploads = [client.upload_mesh(box_mesh.vertices, box_mesh.faces, name=f"slow{i}").id for i in range(2)]
    slow = client.start_fit(uploads[:1], settings=SLOW_FIT, resolution=32)
    queued = client.start_fit(uploads[1:], settings=QUICK_FIT, resolution=32)  # one worker: waits behind the slow one
    _wait_until(lambda: client.job(slow.id).stage.startswith("fitting"))  # in the training loop

    calls = [
        lambda: client.job(slow.id),
        lambda: client.health(),
        lambda: client.shapes(limit=5),
        lambda: client.jobs(state="running"),
        lambda: client.shape(fitted.shape_ids[0]),
    ]
    started = time.perf_counter()
    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(lambda i: _timed(calls[i % len(calls)]), range(50)))
    assert all(ok for ok, _ in results), results
    assert max(seconds for _, seconds in results) < 10 and time.perf_counter() - started < 15
    running = client.job(slow.id)
    assert running.state == "running" and 0 < running.progress < 1 and "surface error" in running.stage

    cancelled = client.cancel(queued.id)
    assert cancelled.state == "cancelled"  # never started
    client.cancel(slow.id)
    job = wait_for(client, slow.id, "cancelled", timeout=30)
    assert job.cancel_requested and job.finished and job.outputs.get("shapes") is None
    assert client.cancel(slow.id).state == "cancelled"  # idempotent
    assert status_of(lambda: client.cancel(fitted.id)) == 409
    assert {j.id for j in client.jobs(state="cancelled")} >= {slow.id, queued.id}
    assert client.health().status == "ok"


def _timed(call) -> tuple[bool, float]:
    started = time.perf_counter()
    try:
        call()
        return True, time.perf_counter() - started
    except ServiceError as error:
        return False, error.detail
