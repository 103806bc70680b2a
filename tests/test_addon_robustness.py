"""The add-on never blocks Blender, never sticks, and never hands its token to a stale service.json.

Client and discovery checks run in plain Python against tiny stand-in HTTP servers that misbehave on
purpose (slow, cut off mid-body, not JSON, redirecting, not our service) and against a real service
killed with SIGKILL; the operator checks run the installed extension in the bpy module
(tests/blender/robustness.py) against such a stand-in.
"""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from backend import __version__
from blender_addon.client import BadResponse, Client, Interrupted, Interrupter, ServiceTimeout, ServiceUnreachable
from blender_addon.client.connection import ConnectionSettings, check_connection
from tests.conftest import blender_script_report, run_cli
from tests.service_server import ServerProcess

pytestmark = [pytest.mark.blender, pytest.mark.service]

needs_bpy = pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="the bpy wheel is not installed")
TOKEN = "secret-token-of-the-test"
SLOW_SECONDS = 1.5
HEALTH = {"status": "ok", "service": "neural-shapes", "version": "0.1.0", "api_version": 1}


def _shape(shape_id: str) -> dict:
    return {
        "id": shape_id,
        "name": shape_id,
        "family_id": "f",
        "architecture": {},
        "metrics": {"surface_error": 0.001},
        "size_bytes": 4,
        "source_sha256": "0" * 64,
        "created": "",
        "job_id": None,
        "transform": {"centre": [0.0, 0.0, 0.0], "scale": 1.0},
    }


def _job(shape_id: str, state: str = "succeeded") -> dict:
    return {
        "id": f"job-{shape_id}",
        "kind": "complete",
        "state": state,
        "progress": 1.0 if state == "succeeded" else 0.0,
        "stage": state,
        "error": None,
        "cancel_requested": False,
        "created": "",
        "started": None,
        "finished": None,
        "inputs": {},
        "outputs": {"shapes": [shape_id]},
    }


def _tetrahedron() -> tuple[bytes, dict[str, str]]:
    vertices = [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]
    faces = [0, 2, 1, 0, 1, 3, 0, 3, 2, 1, 2, 3]
    body = struct.pack("<12f", *vertices) + struct.pack("<12i", *faces) + struct.pack("<12f", *vertices)
    return body, {"X-Vertex-Count": "4", "X-Face-Count": "4"}


class StandIn:
    """A stand-in for the service on a free loopback port, recording every request's method, path and
    headers. What it answers is the service's API, except that the shape id (or job ``job-<id>``) a
    request is about picks a fault: ``slow`` (answers after SLOW_SECONDS), ``hang`` (after a minute),
    ``dies`` (half the body, then a TCP reset), ``truncated`` (half the body, then a clean close),
    ``badjson`` (a body that is not JSON). ``GET /v1/shapes/<id>`` always answers (the add-on's re-import
    check passes and the fault hits the real request); a Complete job starts and succeeds (only slow or
    hang), so the fault hits its download, except ``badjob``, whose polling answers are not JSON.
    ``health`` replaces /health's answer; ``redirect`` answers everything else with a 302 there."""

    def __init__(self, port: int = 0, health: bytes | None = None, redirect: str | None = None):
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                stand_in.answer(self)

            do_POST = do_GET

            def log_message(self, *args):
                pass

        self.health = health if health is not None else json.dumps(HEALTH).encode()
        self.redirect = redirect
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def tokens_seen(self) -> list[str]:
        return [path for _, path, headers in self.requests if "authorization" in headers]

    def answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?")[0]
        length = int(handler.headers.get("Content-Length") or 0)
        request = handler.rfile.read(length) if length else b""
        self.requests.append((handler.command, path, {k.lower(): v for k, v in handler.headers.items()}))
        parts = path.strip("/").split("/")
        if path == "/health":
            return _send(handler, self.health)
        if self.redirect:
            return _send(handler, b"", status=302, headers={"Location": self.redirect + path})
        subject = parts[2] if len(parts) > 2 and parts[1] == "shapes" else ""
        body, headers = json.dumps({"detail": f"no route {path}"}).encode(), {}
        status = 404
        if path == "/v1/jobs":
            status, body = 200, json.dumps({"items": [], "total": 0}).encode()
        elif path == "/v1/shapes/import":
            status, body = 201, json.dumps(_shape("imported")).encode()
        elif path == "/v1/render":
            subject = json.loads(request)["objects"][0]["shape"]
            spec = json.loads(request)
            status, body = 200, bytes(16 * spec["width"] * spec["height"])
            headers = {"X-Width": str(spec["width"]), "X-Height": str(spec["height"])}
        elif (
            path == "/v1/nf2vec/complete"
        ):  # the job starts (slowly for slow ones) and succeeds: its download meets the fault
            subject = json.loads(request)["shape"]
            return _send(
                handler,
                json.dumps(_job(subject, "queued")).encode(),
                status=201,
                fault=subject if subject in ("slow", "hang") else "",
            )
        elif parts[:2] == ["v1", "jobs"] and len(parts) == 3:
            subject = parts[2].removeprefix("job-")
            return _send(handler, json.dumps(_job(subject)).encode(), fault="badjson" if subject == "badjob" else "")
        elif len(parts) == 3 and parts[1] == "shapes":
            return _send(handler, json.dumps(_shape(subject)).encode())  # the re-import check: no fault
        elif len(parts) == 4 and parts[3] == "file":
            status, body = 200, b"\x89HDF fake shape bytes " * 50
        elif len(parts) == 4 and parts[3] == "mesh":
            status, (body, headers) = 200, _tetrahedron()
        elif len(parts) == 4 and parts[3] == "similar":
            status, body = 200, json.dumps([{"id": "other", "name": "other", "distance": 0.25}]).encode()
        elif len(parts) == 4 and parts[3] == "classify":
            status, body = (
                200,
                json.dumps([{"class": "round", "probability": 0.75}, {"class": "boxy", "probability": 0.25}]).encode(),
            )
        _send(handler, body, status=status, headers=headers, fault=subject)


def _send(handler, body: bytes, *, status: int = 200, headers: dict[str, str] | None = None, fault: str = "") -> None:
    if fault in ("slow", "hang"):
        time.sleep(SLOW_SECONDS if fault == "slow" else 60)
    if fault == "badjson":
        body = b"{not json"
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    if fault in ("dies", "truncated"):
        handler.wfile.write(body[: len(body) // 2])
        handler.wfile.flush()
        if fault == "dies":  # like a killed process: the kernel resets the connection
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.close_connection = True
        handler.connection.close()
        return
    handler.wfile.write(body)


@pytest.fixture
def stand_in():
    server = StandIn()
    yield server
    server.close()


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def write_service_file(folder: Path, url: str, pid: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "service.json").write_text(json.dumps({"url": url, "pid": pid}))
    (folder / "token").write_text(TOKEN)


# --- discovery: a stale service.json never receives the token ------------------------------------


def test_dead_pid_in_service_json_is_stale_and_gets_nothing(stand_in, tmp_path):
    write_service_file(tmp_path, stand_in.url, dead_pid())
    with pytest.raises(ServiceUnreachable, match=r"service.json is stale \(process \d+ is gone\)"):
        Client.from_running_service(tmp_path)
    assert check_connection(ConnectionSettings(data_dir=str(tmp_path))).startswith(
        "not connected: no running service found"
    )
    assert stand_in.requests == []  # not even /health was asked


@pytest.mark.parametrize(
    "health",
    [
        b'{"status": "ok"}',  # some other JSON service
        b"<html>Welcome to the admin panel</html>",  # not JSON at all
        json.dumps({**HEALTH, "service": "something-else"}).encode(),
    ],
)
def test_live_pid_but_another_service_on_the_port_gets_no_token(tmp_path, health):
    """The pid was reused and the port now belongs to something else: /health (asked without the token)
    says so, and nothing further is sent."""
    other = StandIn(health=health)
    try:
        write_service_file(tmp_path, other.url, os.getpid())  # a live process, not the service
        status = check_connection(ConnectionSettings(data_dir=str(tmp_path)))
        with pytest.raises(ServiceUnreachable, match="is stale"):
            Client.from_running_service(tmp_path)
    finally:
        other.close()
    assert status.startswith("not connected: no running service found") and "is stale" in status, status
    assert [path for _, path, _ in other.requests] == ["/health", "/health"] and other.tokens_seen() == []


@pytest.mark.parametrize(
    "url",
    [
        "http://192.0.2.1:8765",
        "https://127.0.0.1:8765",
        "http://127.0.0.1.evil.example:8765",
        "http://user@127.0.0.1:8765",
        "file:///etc/passwd",
        "http://127.0.0.1",
    ],
)
def test_service_json_must_name_a_loopback_http_url(tmp_path, url):
    write_service_file(tmp_path, url, os.getpid())
    with pytest.raises(ServiceUnreachable, match="not a loopback http URL"):
        Client.from_running_service(tmp_path)


def test_token_goes_to_the_api_never_to_health(stand_in, tmp_path):
    write_service_file(tmp_path, stand_in.url, os.getpid())
    assert check_connection(ConnectionSettings(data_dir=str(tmp_path))) == "connected: neural-shapes 0.1.0 (API 1)"
    seen = [(path, headers.get("authorization")) for _, path, headers in stand_in.requests]
    assert seen == [("/health", None), ("/health", None), ("/v1/jobs", f"Bearer {TOKEN}")]


def test_redirects_are_not_followed(tmp_path):
    elsewhere = StandIn()
    bouncer = StandIn(redirect=elsewhere.url)
    try:
        with pytest.raises(BadResponse, match="redirect to http://127.0.0.1:.*: not followed") as error:
            Client(bouncer.url, TOKEN).jobs()
    finally:
        bouncer.close()
        elsewhere.close()
    assert error.value.status == 302 and elsewhere.requests == []


def test_service_killed_with_sigkill_and_its_port_taken_gets_no_token(tmp_path):
    """kill -9 leaves service.json behind; another program then listens on the port."""
    server = ServerProcess(tmp_path / "data")
    server.kill()
    assert (server.data_dir / "service.json").exists()
    squatter = StandIn(port=server.port, health=b'{"status": "ok"}')
    try:
        status = check_connection(ConnectionSettings(data_dir=str(server.data_dir)))
    finally:
        squatter.close()
    assert status.startswith("not connected: no running service found") and "stale" in status, status
    assert squatter.tokens_seen() == [] and squatter.requests == []  # the dead pid (and the free lock) say enough


# --- client errors: each cause its own kind and line ----------------------------------------------


def test_refused_slow_cut_off_and_bad_answers_are_told_apart(stand_in):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        free_port = unused.getsockname()[1]
    with pytest.raises(ServiceUnreachable, match="cannot reach the neural-shapes service"):
        Client(f"http://127.0.0.1:{free_port}", TOKEN).jobs()
    client = Client(stand_in.url, TOKEN, timeout=0.3)
    with pytest.raises(
        ServiceTimeout, match=r"did not answer GET /v1/shapes/slow/similar within 0.3 s \(it may still be working"
    ) as slow:
        client.similar("slow")
    assert "cannot reach" not in slow.value.detail
    client.timeout = 10.0
    with pytest.raises(BadResponse, match="connection to the service broke during GET /v1/shapes/dies/file"):
        client.download_shape("dies")
    with pytest.raises(BadResponse, match="connection to the service broke during GET /v1/shapes/truncated/classify"):
        client.classify("truncated")
    with pytest.raises(BadResponse, match="bad response to GET /v1/shapes/badjson/similar: JSONDecodeError"):
        client.similar("badjson")
    with pytest.raises(
        BadResponse, match="bad response to GET /v1/shapes/badjson/mesh: ValueError: raw mesh of 9 bytes"
    ):
        client.mesh("badjson")
    assert client.job("fine").shape_ids == ["fine"]  # and the good answers still parse


def test_interrupter_breaks_off_a_request_in_flight(stand_in):
    interrupter = Interrupter()
    client = Client(stand_in.url, TOKEN, interrupter=interrupter)
    failure: list[Exception] = []

    def call() -> None:
        try:
            client.similar("hang")
        except Exception as error:
            failure.append(error)

    worker = threading.Thread(target=call)
    worker.start()
    time.sleep(0.3)
    started = time.monotonic()
    interrupter.interrupt()
    worker.join(5)
    assert not worker.is_alive() and time.monotonic() - started < 1.0
    assert isinstance(failure[0], Interrupted), failure
    with pytest.raises(Interrupted, match="not sent"):
        client.jobs()


# --- the operators in Blender --------------------------------------------------------------------


@pytest.fixture(scope="module")
def blender_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("robust-addon")
    built = run_cli("build-addon", "-o", root / "addon")
    assert built.returncode == 0, built.stderr
    server = StandIn()
    try:
        return blender_script_report(
            "robustness.py",
            root / "addon" / f"neural_shapes-{__version__}.zip",
            server.url,
            TOKEN,
            resources=root / "blender",
        )
    finally:
        server.close()


@needs_bpy
def test_operators_return_at_once_while_the_service_is_slow(blender_report):
    slow = blender_report["slow"]
    assert all(result == "FINISHED" for result, _ in slow["pressed"].values()), slow
    assert max(seconds for _, seconds in slow["pressed"].values()) < 0.2, slow["pressed"]
    # side by side on the workers: the job's three slow answers (start, mesh, file) set the pace, not the sum of all
    assert 3 * SLOW_SECONDS <= slow["all_done_after"] < 5 * SLOW_SECONDS, slow
    assert slow["image_size"] == [32, 24] and slow["similar_rows"] == [["other", 0.25]], slow
    assert slow["classes"] == [["round", 0.75], ["boxy", 0.25]] and slow["faces_after"] == 4, slow
    assert slow["stage"] == "completed 1 object(s)" and slow["status"] == "connected: neural-shapes 0.1.0 (API 1)", slow


@needs_bpy
def test_each_button_says_what_it_did(blender_report):
    fine = blender_report["fine"]
    assert fine["lines"] == {
        "preview": "rendered 1 neural object(s) into 'Neural Preview'",
        "similar": "1 shape(s) similar to fine",
        "classify": "classified fine",
        "re_extract": "re-extracted 1 object(s) at 24^3 (sparse)",
        "job": "completed 1 object(s)",
        "connection": "connected: neural-shapes 0.1.0 (API 1)",
    }, fine["lines"]
    assert fine["objects_added"] == 1 and fine["busy_after"] is False and all(fine["buttons_free"].values()), fine


@needs_bpy
@pytest.mark.parametrize(
    "fault, why",
    [
        ("dies", "the connection to the service broke during"),
        ("truncated", "the connection to the service broke during"),
        ("badjson", "bad response to "),
    ],
)
def test_a_broken_answer_fails_the_task_with_a_line_and_frees_the_buttons(blender_report, fault, why):
    report = blender_report[fault]
    lines = {
        name: line for name, line in report["lines"].items() if name != "connection"
    }  # /health and /v1/jobs have no fault
    assert set(lines) == {"preview", "similar", "classify", "re_extract", "job"}
    for name, line in lines.items():
        assert why in line and "\n" not in line and "Traceback" not in line, (name, line)
    assert report["lines"]["preview"].startswith("Render Preview failed: service: ")  # told apart from a local refusal
    assert report["lines"]["job"].startswith("failed: ") and report["objects_added"] == 0, report
    assert report["busy_after"] is False and all(report["buttons_free"].values()), report


@needs_bpy
def test_bad_json_while_polling_a_job_fails_it(blender_report):
    line = blender_report["badjob"]["lines"]["job"]
    assert line.startswith("failed: service: bad response to GET /v1/jobs/job-badjob: JSONDecodeError"), line


@needs_bpy
def test_unregister_ends_timers_workers_and_requests_in_flight(blender_report):
    ended = blender_report["unregister"]
    assert ended["busy_before"] == ["job", "preview", "similar"], ended
    assert ended["seconds"] < 2.0 and ended["timer_registered"] is False and ended["threads"] == [], ended
