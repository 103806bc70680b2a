"""End-to-end times of the Blender add-on's nf2vec operators, as an artist waits for them; prints a markdown table.

    .venv/bin/python bench/bench_blender_nf2vec.py [--model DIR] [--meshes A.ply B.ply] [--resolution 128] [--repeat 1]

A real ``neural-shapes serve`` (CPU, one torch thread: ``tests/service_server.py``) on a temporary data
folder with ``--nf2vec-model MODEL`` and its default decode settings; the add-on built and installed into
the ``bpy`` wheel in a subprocess (``bench/blender/nf2vec_operator_times.py``, the way
``tests/test_addon_nf2vec.py`` runs its script). Two procedural meshes are converted to neural objects
(Convert is timed too), then each nf2vec operator is timed from its ``execute`` until its objects are in
the scene, polled as the UI's timer polls (every 0.5 s), proxies at ``--resolution``^3.

Each repeat is a round in a fresh scene on the same service; the table gives the median of each
operation. The first round pays the cold starts an artist pays once per service: the first fit, and
Check nf2vec loading the model folder. The library Find Similar searches holds only this run's shapes.
Absolute times are noisy on a shared 2-core machine; compare numbers from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.nf2vec.model import CONFIG_NAME, WEIGHTS_NAME
from bench.report import table
from tests.service_server import ServerProcess

DEFAULT_MESHES = [ROOT / "out" / "collection" / "chair_0000.ply", ROOT / "out" / "collection" / "table_0000.ply"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, default=ROOT / "backend" / "nf2vec" / "default", help="nf2vec model folder"
    )
    parser.add_argument(
        "--meshes",
        type=Path,
        nargs=2,
        metavar="PLY",
        help="two meshes to convert (default: chair_0000 and table_0000 of out/collection, generated when missing)",
    )
    parser.add_argument("--resolution", type=int, default=128, help="proxy mesh resolution (marching cubes grid)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; the table gives medians")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for the Blender subprocess")
    args = parser.parse_args()
    # family.h5 is optional: a folder without it embeds a family the tool bundles (the bundled model's case)
    if not all((args.model / name).is_file() for name in (CONFIG_NAME, WEIGHTS_NAME)):
        sys.exit(f"no nf2vec model in {args.model} (train one with scripts/train_default_nf2vec, or pass --model DIR)")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-blender-nf2vec-") as tmp:
        root = Path(tmp)
        meshes = args.meshes or _default_meshes(root / "collection")
        report = _run_blender(root, args.model, meshes, args.resolution, args.repeat, args.timeout)
    rows = []
    for operation in zip(*report["rounds"]):
        last = operation[-1]
        rows.append(
            [
                last["operation"],
                f"{statistics.median(r['seconds'] for r in operation):.2f}",
                last["added"],
                last["result"],
            ]
        )
    runs = f"median of {args.repeat} rounds" if args.repeat > 1 else "one round"
    table(
        f"nf2vec operators in Blender {report['blender']}, end to end at {args.resolution}^3 "
        f"({', '.join(m.name for m in meshes)}; model {report['model']}; {runs})",
        ["operation", "seconds", "objects added", "result"],
        rows,
    )
    print(f"\nbenchmark wall time {time.perf_counter() - started:.0f} s", file=sys.stderr)


def _default_meshes(folder: Path) -> list[Path]:
    """out/collection's chair_0000 and table_0000, or a chair and a table made with ``make-collection``."""
    if all(path.is_file() for path in DEFAULT_MESHES):
        return DEFAULT_MESHES
    made = _cli("make-collection", folder, "--count", "2", "--classes", "chair,table")
    if made.returncode != 0:
        sys.exit(f"make-collection failed:\n{made.stderr}")
    return sorted(folder.glob("*.ply"))


def _run_blender(root: Path, model: Path, meshes: list[Path], resolution: int, repeat: int, timeout: float) -> dict:
    built = _cli("build-addon", "-o", root / "addon")
    if built.returncode != 0:
        sys.exit(f"build-addon failed:\n{built.stderr}")
    [addon] = (path for path in (root / "addon").glob("*.zip") if not path.stem.endswith("-legacy"))  # the extension
    server = ServerProcess(root / "data", "--nf2vec-model", str(model))
    try:
        env = {**os.environ, "BLENDER_USER_RESOURCES": str(root / "blender")}
        result = subprocess.run(
            [
                sys.executable,
                str(ROOT / "bench" / "blender" / "nf2vec_operator_times.py"),
                str(addon),
                str(server.data_dir),
                *map(str, meshes),
                str(resolution),
                str(repeat),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
    finally:
        server.stop()
    if result.returncode != 0:
        sys.exit(
            f"the Blender script failed (exit code {result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
            f"\nservice log (end):\n{server.log()[-3000:]}"
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def _cli(*args) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("neural-shapes")
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=600, check=False)


if __name__ == "__main__":
    main()
