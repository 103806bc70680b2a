"""Bounded requests against a real ``neural-shapes serve``: cost limits stated in the schema, the compute
queue (slots, waiting line, 503 + Retry-After), deadlines, client disconnects, and a full disk (tmpfs)."""

from __future__ import annotations

import asyncio
import errno
import http.client
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from backend.service.errors import ClientGone, DeadlineExceeded, QueueFull
from backend.service.services.compute import ComputeQueue
from tests.service_server import QUICK_FIT, SLOW_FIT, ServerProcess, call

pytestmark = pytest.mark.service

DEADLINE = 6.0  # seconds: the module's server stops mesh / render requests after this
SLOW_MESH = "method=dense&resolution=512"  # a minute of CPU time here: always stopped by the deadline or a disconnect
FAST_MESH = "method=sparse&resolution=32"


@pytest.fixture(scope="module")
def sphere_h5(sphere_mesh) -> bytes:
    """A small fitted sphere as ``.h5`` bytes (made in process: no fit job needed)."""
    from backend.fitting.batched import FitResult
    from backend.fitting.pipeline import fitted_shape
    from backend.meshes.loading import normalise_mesh
    from backend.shapes.architecture import random_family
    from backend.shapes.shape_file import shape_to_bytes
    from tests.fields import fit_sphere

    mesh = normalise_mesh(sphere_mesh.vertices, sphere_mesh.faces, name="sphere")
    result = FitResult(weights=fit_sphere(), steps=300, fit_seconds=1.0, final_loss=0.01, surface_error_estimate=0.01)
    shape = fitted_shape(mesh, result, random_family(), source_name="sphere")
    shape.metrics.update(surface_error=0.01, chamfer=0.01, fscore=0.9)  # stored shapes carry their quality metrics
    return shape_to_bytes(shape)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # 1 running + 39 waiting = the 40 mesh requests of the issue; a 41st is refused
    srv = ServerProcess(
        tmp_path_factory.mktemp("limits") / "data", "--compute-deadline", str(DEADLINE), "--compute-queue", "39"
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def sphere_id(server, sphere_h5) -> str:
    return server.client.import_shape(sphere_h5, name="sphere").id


# --- the compute queue in process ----------------------------------------------------------------


def test_queue_keeps_order_refuses_past_its_line_and_stops_requests():
    queue = ComputeQueue(slots=1, max_waiting=1, deadline_seconds=5.0)
    ran: list[str] = []

    async def scenario() -> None:
        stays = asyncio.Event()  # a client that never leaves
        with queue:  # a job holds the only slot
            first = asyncio.ensure_future(
                queue.run(lambda: ran.append("first") or 1, what="mesh", disconnected=stays.wait)
            )
            await asyncio.sleep(0.05)
            with pytest.raises(QueueFull, match="1 mesh / render requests are already waiting") as refused:
                await queue.run(lambda: ran.append("refused"), what="mesh", disconnected=stays.wait)
            assert 1 <= refused.value.retry_after <= 60 and not first.done()
        assert await first == 1  # the job's slot went to the first in line
        leaves = asyncio.Event()
        with queue:
            gone = asyncio.ensure_future(queue.run(lambda: ran.append("gone"), what="mesh", disconnected=leaves.wait))
            await asyncio.sleep(0.05)
            leaves.set()
            with pytest.raises(ClientGone):
                await gone  # dropped from the line, never run
        short = ComputeQueue(slots=1, max_waiting=0, deadline_seconds=0.2)
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded, match="deadline of 0.2 s"):
            await short.run(_spin_until_stopped, what="mesh", disconnected=stays.wait)
        assert time.monotonic() - started < 0.5  # stopped between kernel launches
        assert await short.run(lambda: 2, what="mesh", disconnected=stays.wait) == 2  # and its slot came back

    asyncio.run(scenario())
    assert ran == ["first"]


def _spin_until_stopped() -> None:
    """Chunked work (as the kernels launch it) for up to 5 s, unless the stop check between ranges raises."""
    from kernels.device import run_chunked

    for _ in range(100):
        run_chunked("cpu", 8, lambda start, stop: time.sleep(0.01), min_chunk=1)


# --- limits stated in the schema -----------------------------------------------------------------


def test_offsets_and_costs_are_bounded_and_the_schema_says_so(server, sphere_id, box_mesh):
    huge = "6391222276175357098592305152"
    for path in (f"/v1/shapes?offset={huge}", f"/v1/jobs?offset={huge}"):
        answer = call(server, "GET", path)
        assert answer.status == 422 and "2147483647" in answer.detail(), answer.body
    assert call(server, "GET", "/v1/jobs?offset=2147483647").status == 200

    dense = call(server, "GET", f"/v1/shapes/{sphere_id}/mesh?method=dense&resolution=1024")
    assert dense.status == 422 and "dense meshes are limited to resolution 512" in dense.detail()

    big_render = {"width": 8192, "height": 8192, "objects": [{"shape": sphere_id}] * 8, "settings": {"max_steps": 1000}}
    answer = call(server, "POST", "/v1/render", json_body=big_render)
    assert answer.status == 422 and "over the limit of 34,359,738,368" in answer.detail(), answer.body

    upload = server.client.upload_mesh(box_mesh.vertices, box_mesh.faces, name="box")
    big_fit = {
        "uploads": [upload.id],
        "settings": {"batch_size": 1_048_576},
        "architecture": {"width": 1024, "hidden_layers": 4},
    }
    answer = call(server, "POST", "/v1/jobs/fit", json_body=big_fit)
    assert answer.status == 422 and "over the limit of 268,435,456" in answer.detail(), answer.body
    big_net = {"uploads": [upload.id], "architecture": {"width": 1024, "hidden_layers": 62}}
    answer = call(server, "POST", "/v1/jobs/fit", json_body=big_net)
    assert answer.status == 422 and "parameters 64,030,721 > 4,000,000" in answer.detail(), answer.body

    schema = server.client.request("GET", "/openapi.json")[2].decode()
    assert '"maximum":2147483647' in schema.replace(" ", "") and "at most 512 with method=dense" in schema
    assert "34,359,738,368" in schema and "268,435,456" in schema and "at most 4,000,000 parameters" in schema


# --- queue, deadline, disconnects over HTTP ------------------------------------------------------


@pytest.mark.slow
def test_forty_waiting_mesh_requests_leave_health_and_job_polling_responsive(server, sphere_id, box_mesh):
    upload = server.client.upload_mesh(box_mesh.vertices, box_mesh.faces, name="box")
    job = server.client.start_fit([upload.id], settings=SLOW_FIT, resolution=32)
    try:
        with ThreadPoolExecutor(40) as pool:
            started = time.perf_counter()
            meshes = [pool.submit(call, server, "GET", f"/v1/shapes/{sphere_id}/mesh?{SLOW_MESH}") for _ in range(40)]
            time.sleep(2.5)  # all 40 admitted (about 1 s on a busy 2-core machine): one runs, 39 wait
            refused = call(server, "GET", f"/v1/shapes/{sphere_id}/mesh?{FAST_MESH}")
            assert refused.status == 503 and int(refused.headers["retry-after"]) >= 1 and refused.seconds < 1.0, refused
            assert "already waiting" in refused.detail()
            polls = []
            while not all(m.done() for m in meshes):
                polls += [call(server, "GET", "/health"), call(server, "GET", f"/v1/jobs/{job.id}")]
                time.sleep(0.1)
            answers = [m.result() for m in meshes]
        assert len(polls) >= 20 and all(p.status == 200 for p in polls)
        assert max(p.seconds for p in polls) < 1.0, sorted(p.seconds for p in polls)[-5:]
        assert server.client.job(job.id).state == "running"
        # None of the 40 was refused; every one, running or waiting, was stopped at the deadline (counted from its arrival).
        assert all(a.status == 503 and "deadline of 6 s" in a.detail() for a in answers), [
            a.detail()[:60] for a in answers
        ]
        assert time.perf_counter() - started < DEADLINE + 4.0
    finally:
        server.client.cancel(job.id)


def test_client_disconnect_frees_the_slot_and_drops_a_waiting_request(server, sphere_id):
    running = _send(server, f"/v1/shapes/{sphere_id}/mesh?{SLOW_MESH}")
    time.sleep(0.5)
    waiting = _send(server, f"/v1/shapes/{sphere_id}/mesh?{SLOW_MESH}")
    time.sleep(0.5)
    waiting.close()  # dropped from the line without running (a run would take far longer than the checks below)
    running.close()  # stopped at the kernels' next check
    left = time.perf_counter()
    answer = call(server, "GET", f"/v1/shapes/{sphere_id}/mesh?{FAST_MESH}", timeout=DEADLINE)
    assert answer.status == 200 and time.perf_counter() - left < 2.0, (answer.status, answer.seconds)


def _send(server: ServerProcess, path: str) -> http.client.HTTPConnection:
    """Send a GET without reading the answer (closing the connection is the client's disconnect)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", path, headers={"Authorization": f"Bearer {server.client.token}"})
    return conn


# --- a full disk ---------------------------------------------------------------------------------


def test_disk_full_fails_the_job_and_the_import_cleanly_and_the_service_keeps_answering(tmp_path, sphere_h5, box_mesh):
    data = tmp_path / "data"
    shapes = data / "shapes"
    shapes.mkdir(parents=True, mode=0o700)
    data.chmod(0o700)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2M,mode=0700", "tmpfs", str(shapes)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a 2 MiB tmpfs for the shapes folder (needs root): {mounted.stderr.strip()}")
    server = None
    try:
        server = ServerProcess(data)
        filler = shapes / "filler"
        with pytest.raises(OSError) as full, open(filler, "wb") as out:
            out.write(b"\0" * (3 << 20))
            out.flush()
        assert full.value.errno == errno.ENOSPC
        upload = server.client.upload_mesh(box_mesh.vertices, box_mesh.faces, name="box")

        job = server.client.wait(
            server.client.start_fit([upload.id], settings=QUICK_FIT, resolution=32).id, timeout=120, poll=0.2
        )
        assert job.state == "failed" and job.error.startswith("no space left on the disk of"), job.error
        imported = call(server, "POST", "/v1/shapes/import", body=sphere_h5)
        assert imported.status == 503 and "no space left" in imported.detail(), imported
        assert sorted(os.listdir(shapes)) == ["filler"]  # no partial .h5, no temporary file
        assert server.client.shapes() == [] and call(server, "GET", "/health").status == 200

        filler.unlink()
        job = server.client.wait(
            server.client.start_fit([upload.id], settings=QUICK_FIT, resolution=32).id, timeout=120, poll=0.2
        )
        assert job.state == "succeeded", job.error
        assert call(server, "POST", "/v1/shapes/import", body=sphere_h5).status == 201
        listed = server.client.shapes()
        assert len(listed) == 2 and sorted(os.listdir(shapes)) == sorted(f"{s.id}.h5" for s in listed)
    finally:
        if server is not None:
            server.stop()
        subprocess.run(["umount", str(shapes)], check=True)
