"""Shapes per hour of ``neural-shapes convert`` on one collection: one process, local pools, Ray with 2 workers
(issue 17), and the per-item costs the scaling model in docs/scaling.md is built from.

    .venv/bin/python bench/bench_collection.py [--count 24] [--max-steps 1000] [--samples 250000]

Every mode converts the same generated collection into a fresh folder with the same fit settings, as its
own ``neural-shapes convert`` command (start-up included, as a user pays it). Ray runs on a local cluster
of two single-CPU nodes started here (a head and a worker raylet). Then the driver's own costs: hashing
and registering sources, recording a batch of results and writing the outputs, per item; and the bytes
moved per item (source read by the worker, ``.h5`` returned).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report import table

from backend.datasets.procedural import make_collection
from backend.files import write_atomically
from backend.library.manifest import ItemRecord, Manifest

CLI = [str(Path(sys.executable).with_name("neural-shapes")), "convert"]


def run_mode(name: str, src: Path, out: Path, options: list[str], fit: list[str]) -> dict:
    started = time.perf_counter()
    done = subprocess.run(CLI + [str(src), "-o", str(out), "--json", *fit, *options], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{name} failed ({done.returncode}): {done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    converted = report["run"]["converted"]
    return {
        "mode": name,
        "executor": report["run"]["executor"],
        "converted": converted,
        "seconds": seconds,
        "per_hour": converted / seconds * 3600,
        "median_fit": report["collection"]["median_fit_seconds"],
        "below": report["collection"]["below_target"],
        "h5_bytes": report["collection"]["output_bytes"] / max(converted, 1),
        "source_bytes": report["collection"]["source_bytes"] / max(converted, 1),
    }


def driver_costs(src: Path, work: Path, copies: int) -> dict:
    """Per-item seconds of the driver's own work, on ``copies`` distinct small files."""
    files = []
    payload = (next(src.glob("*.ply"))).read_bytes()
    for index in range(copies):
        path = work / "sources" / f"item_{index:06d}.ply"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload + index.to_bytes(4, "little"))  # distinct content, distinct hash
        files.append(path)
    manifest = Manifest(work / "dest")
    started = time.perf_counter()
    registered = manifest.register(files, max_attempts=3)
    register = (time.perf_counter() - started) / copies
    started = time.perf_counter()
    manifest.register(files, max_attempts=3)  # hashes cached: an unchanged library
    reregister = (time.perf_counter() - started) / copies
    shape_bytes = b"\0" * 32_000
    started = time.perf_counter()
    for start in range(0, copies, 16):
        batch = registered.todo[start : start + 16]
        manifest.mark_running(batch, "bench")
        for item in batch:
            write_atomically(work / "dest" / f"{item.stem}.h5", shape_bytes)
        manifest.record([ItemRecord(item.sha256, "done", "bench", output_bytes=32_000) for item in batch])
    record = (time.perf_counter() - started) / copies
    manifest.close()
    return {"register": register, "reregister": reregister, "record_and_write": record}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=24, help="meshes in the collection")
    parser.add_argument("--max-steps", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=250_000)
    parser.add_argument("--driver-items", type=int, default=2000, help="items for the driver cost measurement")
    parser.add_argument("--modes", default="one,pool1,pool2,ray2", help="comma-separated: one, pool1, pool2, ray2")
    args = parser.parse_args()
    fit = ["--max-steps", str(args.max_steps), "--samples", str(args.samples)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src = work / "collection"
        make_collection(src, args.count, seed=11, messy_fraction=0.0)
        (src / "manifest.json").unlink()
        modes = {
            "one": ("one process (--workers 0)", ["--workers", "0"]),
            "pool1": ("local pool, 1 process x 2 cores", ["--workers", "1"]),
            "pool2": ("local pool, 2 processes x 1 core", ["--workers", "2"]),
        }
        rows = []
        for key in args.modes.split(","):
            if key == "ray2":
                from ray.cluster_utils import Cluster

                node = {"num_cpus": 1, "object_store_memory": 100 * 2**20}
                cluster = Cluster(
                    initialize_head=True, connect=False, head_node_args={**node, "include_dashboard": False}
                )
                cluster.add_node(**node)
                cluster.wait_for_nodes()
                try:
                    rows.append(run_mode("Ray, 2 nodes x 1 CPU", src, work / key, ["--ray", cluster.address], fit))
                finally:
                    cluster.shutdown()
            else:
                name, options = modes[key]
                rows.append(run_mode(name, src, work / key, options, fit))
        costs = driver_costs(src, work / "driver", args.driver_items)
    table(
        f"{args.count} generated meshes, --max-steps {args.max_steps} --samples {args.samples}, whole command",
        ["mode", "seconds", "shapes/hour", "vs one process", "median fit s", "below 0.003"],
        [
            [
                r["mode"],
                f"{r['seconds']:.0f}",
                f"{r['per_hour']:.0f}",
                f"{r['per_hour'] / rows[0]['per_hour']:.2f}x",
                f"{r['median_fit']:.1f}",
                f"{r['below']:.0%}",
            ]
            for r in rows
        ],
    )
    first = rows[0]
    table(
        "per-item costs (scaling model inputs)",
        ["cost", "value"],
        [
            ["worker seconds per shape (one process, 2 cores)", f"{first['seconds'] / first['converted']:.1f}"],
            ["driver: hash + register a new source", f"{costs['register'] * 1e3:.2f} ms"],
            ["driver: re-register an unchanged source", f"{costs['reregister'] * 1e3:.2f} ms"],
            ["driver: write .h5 + record the row (batches of 16)", f"{costs['record_and_write'] * 1e3:.2f} ms"],
            ["bytes read per item by a worker (source mesh)", f"{first['source_bytes'] / 1e3:.0f} kB"],
            ["bytes returned per item (.h5)", f"{first['h5_bytes'] / 1e3:.1f} kB"],
        ],
    )


if __name__ == "__main__":
    main()
