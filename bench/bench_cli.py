"""Start-up cost of the ``neural-shapes`` command line: whole processes next to the work they do in process.

    .venv/bin/python bench/bench_cli.py [--shape SHAPE.h5] [--repeats 9]

Each command runs once to warm the caches (Python bytecode, Warp's kernel cache, the file cache), then
``--repeats`` times; the table gives the median wall time of the whole process, as a shell loop or a
``blender -b`` script pays it. The in-process rows time only the work (extraction at 256^3 and writing the
OBJ, one 512x512 frame and its PNG) with everything imported and compiled, so the difference is what
starting a process costs.
Without ``--shape`` a neural shape is first fitted to samples/mug.obj (not timed). Targets (issue 15):
``--help`` and ``info`` <= 0.4 s, ``mesh --resolution 256`` and ``render --size 512x512`` <= 1.2 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report import table

CLI = [sys.executable, "-m", "backend.cli"]


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def whole_process(args: list[str]) -> Callable[[], None]:
    def run() -> None:
        subprocess.run(CLI + args, cwd=ROOT, check=True, capture_output=True)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=Path, help="A neural shape file (default: one fitted to samples/mug.obj).")
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    shape_path = args.shape
    if shape_path is None:
        subprocess.run(
            CLI + ["fit", str(ROOT / "samples" / "mug.obj"), "-o", str(work)], check=True, capture_output=True
        )
        shape_path = work / "mug.h5"

    commands = {
        "neural-shapes --help": ["--help"],
        "neural-shapes info SHAPE.h5": ["info", str(shape_path)],
        "neural-shapes mesh SHAPE.h5 --resolution 256": [
            "mesh",
            str(shape_path),
            "-o",
            str(work / "out.obj"),
            "--resolution",
            "256",
        ],
        "neural-shapes render SHAPE.h5 --size 512x512": [
            "render",
            str(shape_path),
            "-o",
            str(work / "out.png"),
            "--size",
            "512x512",
        ],
    }
    process_seconds = {name: median_seconds(whole_process(argv), args.repeats) for name, argv in commands.items()}

    from backend.meshes.extraction import extract_surface
    from backend.meshes.writing import write_mesh_file
    from backend.rendering.renderer import Scene, SceneObject, frame_objects, render, write_png
    from backend.shapes.shape_file import read_shape
    from kernels.device import default_device

    shape = read_shape(shape_path)
    device = default_device()
    scene = Scene([SceneObject(shape)])
    scene = Scene(scene.objects, frame_objects(scene.objects, 512, 512))

    def mesh_to_file(path: Path) -> None:
        surface = extract_surface(shape.architecture, shape.weights, 256, transform=shape.transform, device=device)
        write_mesh_file(path, surface.vertices, surface.faces, surface.normals)

    in_process = {
        "neural-shapes mesh SHAPE.h5 --resolution 256": median_seconds(
            lambda: mesh_to_file(work / "in-process.obj"), args.repeats
        ),
        "neural-shapes render SHAPE.h5 --size 512x512": median_seconds(
            lambda: write_png(render(scene, 512, 512, device).rgba, work / "in-process.png"), args.repeats
        ),
    }
    targets = {"neural-shapes --help": 0.4, "neural-shapes info SHAPE.h5": 0.4}
    rows = []
    for name, seconds in process_seconds.items():
        target = targets.get(name, 1.2)
        work_seconds = in_process.get(name)
        rows.append(
            [
                f"`{name}`",
                f"{seconds:.2f}",
                "-" if work_seconds is None else f"{work_seconds:.2f}",
                f"<= {target}",
                "yes" if seconds <= target else "no",
            ]
        )
    table(
        f"Command line start-up ({args.repeats} runs each after a warm-up, median seconds; device {device})",
        ["command", "whole process", "the work in process", "target", "met"],
        rows,
    )


if __name__ == "__main__":
    main()
