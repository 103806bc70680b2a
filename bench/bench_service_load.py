"""Load on the local service (a real ``neural-shapes serve``): concurrent clients during a running fit job;
prints a markdown table.

    .venv/bin/python bench/bench_service_load.py [--clients 100] [--seconds 30]

The clients are threads with their own HTTP connections, each sending one kind of request in a loop:
half ``GET /health``, a quarter ``GET /v1/jobs/{id}`` polling the fit, an eighth mesh extraction
(128^3, sparse, raw arrays) and an eighth rendering (256^2 PNG). A 503 with Retry-After (the compute
queue is full) counts as answered and refused, and that client waits as told; any other status, a
timeout or a connection error is a failure. Status clients pause 0.1 s between requests, like the
add-on's polling. Absolute times are noisy on a shared 2-core machine; compare numbers from one run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import trimesh

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report import table

from tests.service_server import QUICK_FIT, SLOW_FIT, ServerProcess, call

STATUS_PAUSE = 0.1  # seconds between a status client's requests


def kinds(shape_id: str, job_id: str) -> dict[str, tuple[str, str, dict | None]]:
    """Request kinds: method, path, JSON body."""
    render = {"width": 256, "height": 256, "objects": [{"shape": shape_id}]}
    return {
        "health": ("GET", "/health", None),
        "job poll": ("GET", f"/v1/jobs/{job_id}", None),
        "mesh 128^3": ("GET", f"/v1/shapes/{shape_id}/mesh?resolution=128", None),
        "render 256^2": ("POST", "/v1/render", render),
    }


def client_kind(index: int, clients: int) -> str:
    """Half health, a quarter job polling, an eighth mesh, an eighth render."""
    share = index / clients
    return (
        "health" if share < 0.5 else "job poll" if share < 0.75 else "mesh 128^3" if share < 0.875 else "render 256^2"
    )


def run_clients(
    server: ServerProcess, requests: dict, clients: int, seconds: float
) -> dict[str, list[tuple[str, float]]]:
    """Every client loops until ``seconds`` have passed; returns per kind a list of (outcome, seconds)."""
    results: dict[str, list[tuple[str, float]]] = defaultdict(list)
    lock = threading.Lock()
    ends: list[float] = []
    start = threading.Barrier(clients, action=lambda: ends.append(time.monotonic() + seconds))  # all threads started

    def client(kind: str) -> None:
        method, path, body = requests[kind]
        start.wait()
        while time.monotonic() < ends[0]:
            began = time.perf_counter()
            try:
                answer = call(server, method, path, json_body=body, timeout=120)
                retry = answer.headers.get("retry-after")
                outcome = (
                    "ok"
                    if answer.status == 200
                    else "refused"
                    if answer.status == 503 and retry
                    else f"status {answer.status}"
                )
            except OSError as error:
                outcome, retry = f"{type(error).__name__}", None
            with lock:
                results[kind].append((outcome, time.perf_counter() - began))
            if outcome == "refused":
                time.sleep(float(retry))
            elif kind in ("health", "job poll"):
                time.sleep(STATUS_PAUSE)

    threads = [threading.Thread(target=client, args=(client_kind(i, clients),)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the clients send requests")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        server = ServerProcess(Path(folder) / "data")
        try:
            client = server.client
            box = trimesh.creation.box(extents=(1.0, 0.6, 0.8))
            upload = client.upload_mesh(box.vertices, box.faces, name="box")
            shape_id = client.wait(
                client.start_fit([upload.id], settings=QUICK_FIT, resolution=32, keep_uploads=True).id, timeout=300
            ).shape_ids[0]
            job = client.start_fit([upload.id], settings=SLOW_FIT, resolution=32)
            while not client.job(job.id).stage.startswith("fitting"):
                time.sleep(0.1)
            results = run_clients(server, kinds(shape_id, job.id), args.clients, args.seconds)
            fitting = client.job(job.id).state
            client.cancel(job.id)
        finally:
            server.stop()

    rows = []
    for kind in ("health", "job poll", "mesh 128^3", "render 256^2"):
        outcomes = results[kind]
        ok = [t for o, t in outcomes if o == "ok"]
        refused = sum(o == "refused" for o, _ in outcomes)
        failed = sorted({o for o, _ in outcomes} - {"ok", "refused"})
        ms = 1000 * np.asarray(ok or [np.nan])
        rows.append(
            [
                kind,
                sum(client_kind(i, args.clients) == kind for i in range(args.clients)),
                len(outcomes),
                len(ok),
                refused,
                len(outcomes) - len(ok) - refused,
                f"{np.percentile(ms, 50):.0f}",
                f"{np.percentile(ms, 99):.0f}",
                f"{len(ok) / args.seconds:.2f}",
                ", ".join(failed) or "-",
            ]
        )
    table(
        f"{args.clients} concurrent clients for {args.seconds:g} s during a running fit (fit still {fitting} at the end)",
        [
            "requests",
            "clients",
            "sent",
            "200",
            "503 + Retry-After",
            "failed",
            "p50 ms (200)",
            "p99 ms (200)",
            "answered 200 / s",
            "failures",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
