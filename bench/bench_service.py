"""Benchmarks of the local service (a real ``neural-shapes serve`` subprocess); prints markdown tables.

    .venv/bin/python bench/bench_service.py [--quick]

1. Job-status latency: idle, and while a fit job trains (torch threads bounded to cores - 1).
2. Mesh extraction (256^3, sparse) and rendering (512^2) through the API vs the same call in process;
   API times include HTTP, encoding and decoding the raw arrays.
3. Throughput of one 16-mesh fit job (batched) vs 16 single-mesh jobs, same settings.
Absolute times are noisy on a shared 2-core machine; compare numbers from one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import trimesh

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report import table
from shapes import varied_meshes

from backend.meshes.extraction import extract_mesh
from backend.rendering.renderer import Scene, SceneObject, render
from backend.shapes.shape_file import read_shape
from kernels.device import default_device
from tests.service_server import SLOW_FIT, ServerProcess


def timed(fn, repeat: int) -> tuple[float, object]:
    """Median seconds of ``repeat`` calls and the last result."""
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def latencies(call, count: int) -> list[float]:
    out = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        out.append(1000 * (time.perf_counter() - started))
    return out


def bench_status(client, torus: trimesh.Trimesh, count: int) -> None:
    upload = client.upload_mesh(torus.vertices, torus.faces, name="torus")
    latencies(client.health, 20)  # warm-up
    job = client.start_fit([upload.id], settings=SLOW_FIT, resolution=32)
    while not client.job(job.id).stage.startswith("fitting"):
        time.sleep(0.05)
    busy = latencies(lambda: client.job(job.id), count)
    client.cancel(job.id)
    while client.job(job.id).state != "cancelled":
        time.sleep(0.05)
    idle = latencies(lambda: client.job(job.id), count)
    rows = [
        [name, f"{np.median(v):.1f}", f"{np.percentile(v, 95):.1f}", f"{max(v):.1f}"]
        for name, v in (("idle", idle), ("while a fit job trains", busy))
    ]
    table(f"GET /v1/jobs/{{id}} latency, {count} sequential requests (ms)", ["service", "median", "p95", "max"], rows)


def bench_mesh_render(client, data_dir: Path, shape_id: str, resolution: int, size: int, repeat: int) -> None:
    shape = read_shape(data_dir / "shapes" / f"{shape_id}.h5")
    device = default_device()

    def local_mesh():
        mesh = extract_mesh(
            shape.architecture, shape.weights, resolution, method="sparse", transform=shape.transform, device=device
        )
        return len(mesh.faces)

    def api_mesh():
        return client.mesh(shape_id, resolution=resolution).face_count

    scene = Scene([SceneObject(shape)])

    def local_render():
        return render(scene, size, size, device).rgba

    def api_render(format: str):
        return lambda: client.render([{"shape": shape_id}], width=size, height=size, format=format).data

    rows = []
    for name, local, api in (
        (f"mesh {resolution}^3 sparse (raw arrays)", local_mesh, api_mesh),
        (f"render {size}x{size} (float32 RGBA)", local_render, api_render("rgba")),
        (f"render {size}x{size} (PNG; in process: no encoding)", local_render, api_render("png")),
    ):
        local(), api()  # warm-up: kernels compiled and loaded on both sides
        local_times, api_times = [], []
        for _ in range(repeat):  # interleaved, so drifting machine load hits both alike
            local_times.append(timed(local, 1)[0])
            seconds, result = timed(api, 1)
            api_times.append(seconds)
        local_s, api_s = statistics.median(local_times), statistics.median(api_times)
        extra = f"{len(result):,} bytes" if isinstance(result, bytes) else f"{result:,} faces"
        rows.append([name, f"{local_s:.3f}", f"{api_s:.3f}", f"{100 * (api_s / local_s - 1):+.1f}%", extra])
    table(
        f"API vs in process, median of {repeat} (device {device})",
        ["call", "in process s", "through API s", "overhead", "result"],
        rows,
    )


def bench_throughput(client, count: int, steps: int) -> None:
    meshes = varied_meshes(count)
    settings = {"samples": 50_000, "max_steps": steps, "target_surface_error": 1e-9}

    def run(groups: list[list[int]]) -> float:
        started = time.perf_counter()
        jobs = []
        for group in groups:
            uploads = [client.upload_mesh(meshes[i].vertices, meshes[i].faces, name=f"m{i}").id for i in group]
            jobs.append(client.start_fit(uploads, settings=settings, resolution=64))
        for job in jobs:
            assert client.wait(job.id, timeout=3600, poll=0.2).state == "succeeded"
        return time.perf_counter() - started

    single = run([[i] for i in range(count)])
    batched = run([list(range(count))])
    rows = [
        [f"{count} single-mesh jobs", f"{single:.1f}", f"{60 * count / single:.1f}", "1.0x"],
        [f"one {count}-mesh job", f"{batched:.1f}", f"{60 * count / batched:.1f}", f"{single / batched:.1f}x"],
    ]
    table(
        f"Fit throughput through the API: {steps} steps, 50,000 samples, 2,048 points per shape per step, metrics at 64^3 (upload to done)",
        ["run", "seconds", "meshes/min", "throughput"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (smoke test of the script)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data"
        server = ServerProcess(data)
        try:
            client = server.client
            torus = trimesh.creation.torus(0.6, 0.25, major_sections=64, minor_sections=32)
            bench_status(client, torus, 50 if args.quick else 200)
            fit = client.start_fit(
                [client.upload_mesh(torus.vertices, torus.faces, name="torus").id],
                settings={"samples": 100_000, "max_steps": 300 if args.quick else 1500, "target_surface_error": 0.003},
                resolution=64,
            )
            shape_id = client.wait(fit.id, timeout=3600).shape_ids[0]
            bench_mesh_render(
                client, data, shape_id, 128 if args.quick else 256, 128 if args.quick else 512, 3 if args.quick else 5
            )
            bench_throughput(client, 4 if args.quick else 16, 50 if args.quick else 300)
        finally:
            server.terminate()


if __name__ == "__main__":
    main()
