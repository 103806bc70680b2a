"""Real meshes to neural shapes, as a user runs it: quality per mesh and whole-command time (issue 16).

    scripts/fetch_real_meshes                      # 26 scans, sculpts and CAD parts into ../real-meshes
    .venv/bin/python bench/bench_real_meshes.py [MESHES] [--quality high] [--single 5] [--busy]

Converts the folder with ``neural-shapes fit MESHES --json`` (one command, meshes batched as the
command does by default) and prints the quality table (surface error, its 99th percentile, Chamfer,
F-score, steps, seconds, the net and the checks a shape missed), then the issue's acceptance figures:
the share of meshes at surface error <= 0.003, the worst one, the meshes with F-score@0.01 >= 0.95 and
Chamfer <= 0.010, and the whole command's wall time per mesh. ``--single N`` also times N meshes
(spread over the folder) each in a command of its own (median), ``--busy`` runs everything next to one busy process (a
Python loop, as when Blender works next to the service). ``--pictures FILE`` draws the hardest meshes
(lowest F-score) next to their neural shapes: the source by the mesh ray caster, the shape by the sphere
tracer, one camera and light.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
from report import table

from backend.meshes.loading import load_mesh_file
from backend.rendering.renderer import write_png
from backend.shapes.shape_file import read_shape
from bench.pictures import mesh_tile, render_tile, sheet

CLI = [sys.executable, "-m", "backend.cli", "fit"]
TARGET, WORST, FSCORE, CHAMFER = 0.003, 0.006, 0.95, 0.010


def convert(sources: list[Path], out: Path, options: list[str]) -> tuple[list[dict], float]:
    """The ``--json`` rows of one ``fit`` command over ``sources`` and its wall time in seconds."""
    started = time.perf_counter()
    done = subprocess.run(CLI + [str(s) for s in sources] + ["-o", str(out), "--json", *options], capture_output=True)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):  # 1: some meshes were refused, their rows say why
        sys.exit(f"fit failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
    return json.loads(done.stdout), seconds


def spread(sources: list[Path], count: int) -> list[Path]:
    """``count`` of ``sources`` spread evenly over the (sorted) list, not the first ones."""
    return [sources[i * len(sources) // count] for i in range(min(count, len(sources)))] if count else []


def busy_loop() -> None:
    while True:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("meshes", type=Path, nargs="?", default=ROOT.parent / "real-meshes")
    parser.add_argument("--quality", default="standard", choices=["standard", "high"])
    parser.add_argument(
        "--single", type=int, default=0, help="Also time this many meshes (spread over the folder) one command each."
    )
    parser.add_argument("--busy", action="store_true", help="Run next to one busy process.")
    parser.add_argument("--out", type=Path, help="Keep the outputs here (default: a temporary folder).")
    parser.add_argument("--pictures", type=Path, help="Write a PNG of the hardest meshes next to their shapes.")
    parser.add_argument("--hardest", type=int, default=6, help="Meshes in the picture.")
    parser.add_argument("--size", type=int, default=192, help="Picture tile size in pixels.")
    args = parser.parse_args()
    sources = sorted(p for p in args.meshes.iterdir() if p.is_file())
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-real-"))
    busy = multiprocessing.Process(target=busy_loop, daemon=True) if args.busy else None
    if busy:
        busy.start()
    try:
        rows, seconds = convert(sources, out, ["--quality", args.quality])
        singles = [
            convert([s], out / "single" / s.stem, ["--quality", args.quality])[1] for s in spread(sources, args.single)
        ]
    finally:
        if busy:
            busy.terminate()
    fitted = [r for r in rows if r.get("output")]
    load = " next to one busy process" if args.busy else ""
    table(
        f"{len(sources)} real meshes, quality {args.quality}{load}: {seconds:.0f} s for the whole command",
        ["mesh", "surface error", "tail (p99)", "Chamfer", "F-score", "steps", "seconds", "net", "outcome"],
        [
            [
                Path(r["source"]).name,
                f"{r['surface_error']:.4f}",
                f"{r['surface_error_p99']:.4f}",
                "inf" if r["chamfer"] is None else f"{r['chamfer']:.4f}",
                f"{r['fscore']:.3f}",
                r["steps"],
                f"{r['fit_seconds']:.1f}",
                r["net"],
                r["outcome"],
            ]
            for r in fitted
        ]
        + [[Path(r["source"]).name, "refused: " + r["error"], *[""] * 7] for r in rows if r.get("error")],
    )
    errors = [r["surface_error"] for r in fitted]
    good = [r for r in fitted if r["fscore"] >= FSCORE and r["chamfer"] is not None and r["chamfer"] <= CHAMFER]
    figures = [
        [f"surface error <= {TARGET}", f"{sum(e <= TARGET for e in errors)} of {len(fitted)}", ">= 97%"],
        ["worst surface error", f"{max(errors):.4f}", f"<= {WORST}"],
        [f"F-score >= {FSCORE} and Chamfer <= {CHAMFER}", f"{len(good)} of {len(fitted)}", "all"],
        ["whole command per mesh, folder", f"{seconds / len(sources):.1f} s", "<= 7 s"],
    ]
    if singles:
        figures.append(
            [
                f"whole command per mesh, alone (median of {len(singles)})",
                f"{statistics.median(singles):.1f} s",
                "<= 7 s",
            ]
        )
    table("acceptance (issue 16)", ["figure", "measured", "target"], figures)
    if args.pictures:
        hardest = sorted(fitted, key=lambda r: r["fscore"])[: args.hardest]
        write_png(side_by_side(hardest, args.size), args.pictures)
        print(f"\n![the {len(hardest)} hardest meshes, source and neural shape]({args.pictures})")


def side_by_side(rows: list[dict], size: int) -> np.ndarray:
    """One row per fit (``--json`` rows): the source mesh and its neural shape, in the shape's normalised frame."""
    tiles, labels = [], []
    for row in rows:
        shape = read_shape(Path(row["output"]))
        source = load_mesh_file(Path(row["source"]), transform=shape.transform)
        tiles.append([mesh_tile(source.vertices, source.faces, size), render_tile(shape, size)[0]])
        labels.append(f"{Path(row['source']).stem}  F {row['fscore']:.2f}")
    return sheet(tiles, labels, size, titles=["source", "neural shape"])


if __name__ == "__main__":
    main()
