"""Fuzzing figure: malformed OBJ / PLY / STL / OFF / GLB and .h5 shape files (tests/malformed_files.py:
structure-aware hypothesis generation of the defect classes of real collections) through the loaders
in process and through a real service; prints a markdown table.

    .venv/bin/python bench/fuzz_loaders.py [--loader-cases 10000] [--api-cases 1000] [--seed 13]

Loaders (``load_mesh_bytes``, ``shape_from_bytes``): a case is accepted (a finite mesh inside the
normalising sphere, a shape with finite weights) or refused (a one-line NeuralShapesError); any other
exception or a bad result is a crash, more than 2 s of CPU time a hang (max seconds: CPU time). Peak RSS is this process's high-water mark
after the format's cases; a case that raises it by more than 256 MiB counts as a crash (memory).

API (``POST /v1/uploads`` for meshes, ``POST /v1/shapes/import`` for .h5, on ``neural-shapes serve``):
every answer must be 2xx, or 4xx with a JSON ``{"detail": "<one line>"}``; a 5xx, a dropped connection
or a bad body is a crash, more than 2 s (wall clock, as the client waits) a hang; /health is polled every 50 cases and the server must
still run at the end. Peak RSS is the server's (VmHWM).
"""

from __future__ import annotations

import argparse
import http.client
import json
import resource
import signal
import sys
import tempfile
import time
import traceback
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlencode

from hypothesis import HealthCheck, Phase, given, seed, settings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from report import table

from tests.malformed_files import FORMATS, load_case, malformed_case, valid_file
from tests.service_server import ServerProcess

HANG_SECONDS = 2.0
MEMORY_JUMP = 256 * 2**20  # bytes of RSS high-water mark one case may add


class Tally:
    """Outcomes per format: cases, accepted, refused, crashes, hangs, max seconds, peak RSS (MiB)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict] = defaultdict(
            lambda: dict(cases=0, accepted=0, refused=0, crashes=0, hangs=0, seconds=0.0, rss=0.0)
        )
        self.examples: list[str] = []

    def add(self, fmt: str, description: str, outcome: str, seconds: float, rss_mib: float, note: str = "") -> None:
        row = self.rows[fmt]
        row["cases"] += 1
        row[outcome] += 1
        row["seconds"] = max(row["seconds"], seconds)
        row["rss"] = max(row["rss"], rss_mib)
        if seconds > HANG_SECONDS:
            row["hangs"] += 1
            note = f"{note or description}: {seconds:.1f} s"
        if note and len(self.examples) < 20:
            self.examples.append(f"{fmt}: {note}")

    def print(self, title: str) -> None:
        formats = sorted(self.rows, key=lambda f: FORMATS.index(f) if f in FORMATS else 99)
        body = [_row(fmt, self.rows[fmt]) for fmt in formats]
        total = {k: sum(r[k] for r in self.rows.values()) for k in ("cases", "accepted", "refused", "crashes", "hangs")}
        total |= {k: max(r[k] for r in self.rows.values()) for k in ("seconds", "rss")}  # the slowest, the largest
        body.append(_row("**all**", total))
        table(
            title, ["format", "cases", "accepted", "refused", "crashes", "hangs", "max seconds", "peak RSS (MiB)"], body
        )
        for example in self.examples:
            print(f"- {example}")


def _row(label: str, r: dict) -> list[str]:
    """A table row: the case counts, then the seconds and the peak RSS (MiB)."""
    counts = [f"{r['cases']:,}", f"{r['accepted']:,}", f"{r['refused']:,}", str(r["crashes"]), str(r["hangs"])]
    return [label, *counts, f"{r['seconds']:.2f}", f"{r['rss']:.0f}"]


def own_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def run_cases(count: int, random_seed: int, on_case) -> None:
    """Call ``on_case(format, description, data)`` for ``count`` drawn malformed files (formats in turn)."""
    per_format = -(-count // len(FORMATS))
    for index, fmt in enumerate(FORMATS):

        @seed(random_seed + index)
        @settings(
            max_examples=per_format,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(malformed_case((fmt,)))
        def one(case):
            on_case(*case)

        one()


def _alarm(signum, frame):
    raise TimeoutError("case ran for 30 s")


def fuzz_loaders(count: int, random_seed: int) -> Tally:
    tally = Tally()
    for fmt in FORMATS:
        load_case(fmt, valid_file(fmt))  # lazy imports before anything is timed
    signal.signal(signal.SIGALRM, _alarm)

    def on_case(fmt: str, description: str, data: bytes) -> None:
        before = own_rss_mib()
        started = time.process_time()  # CPU time: on a shared machine wall time mostly measures the neighbours
        signal.alarm(30)
        try:
            outcome, note = load_case(fmt, data), ""
        except Exception as error:  # noqa: BLE001 (the point: anything but NeuralShapesError is a crash)
            outcome, note = "crashes", f"{description}: {type(error).__name__}: {str(error)[:160]} ({_where(error)})"
        finally:
            signal.alarm(0)
        seconds, after = time.process_time() - started, own_rss_mib()
        if after - before > MEMORY_JUMP / 2**20:
            outcome, note = "crashes", f"{description}: RSS +{after - before:.0f} MiB"
        tally.add(fmt, description, outcome, seconds, after, note)

    run_cases(count, random_seed, on_case)
    return tally


def _where(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if "/backend/" in f.filename or "/kernels/" in f.filename]
    frame = (ours or frames or [None])[-1]
    return "?" if frame is None else f"{Path(frame.filename).name}:{frame.lineno}"


def fuzz_api(count: int, random_seed: int) -> Tally:
    tally = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "data")
        token = (server.data_dir / "token").read_text().strip()
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        done = [0]

        def post(path: str, query: dict, body: bytes) -> tuple[int, bytes]:
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}
            connection.request("POST", f"{path}?{urlencode(query)}", body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()

        def on_case(fmt: str, description: str, data: bytes) -> None:
            started = time.perf_counter()
            note = ""
            try:
                if fmt == "h5":
                    status, body = post("/v1/shapes/import", {"name": "fuzz"}, data)
                else:
                    status, body = post("/v1/uploads", {"format": fmt.split("-")[0], "name": "fuzz"}, data)
                outcome = "accepted" if 200 <= status < 300 else "refused" if 400 <= status < 500 else "crashes"
                detail = json.loads(body).get("detail") if outcome == "refused" else None
                if outcome == "refused" and not (isinstance(detail, str) and detail and len(detail.splitlines()) == 1):
                    outcome = "crashes"
                if outcome == "crashes":
                    note = f"{description}: HTTP {status} {body[:160]!r}"
            except (OSError, http.client.HTTPException, ValueError) as error:
                outcome, note = "crashes", f"{description}: {type(error).__name__}: {error}"
                connection.close()
            seconds = time.perf_counter() - started
            done[0] += 1
            if done[0] % 50 == 0:
                health = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
                health.request("GET", "/health")
                if health.getresponse().status != 200:
                    outcome, note = "crashes", "/health did not answer 200"
                health.close()
            tally.add(fmt, description, outcome, seconds, _server_rss_mib(server), note)

        try:
            run_cases(count, random_seed, on_case)
            alive = server.process.poll() is None
        finally:
            connection.close()
            server.terminate()
        if not alive:
            tally.examples.insert(0, "the server died")
    return tally


def _server_rss_mib(server: ServerProcess) -> float:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loader-cases", type=int, default=10_000)
    parser.add_argument("--api-cases", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    started = time.perf_counter()
    if args.loader_cases:
        fuzz_loaders(args.loader_cases, args.seed).print(f"Loaders in process ({time.perf_counter() - started:.0f} s)")
    started = time.perf_counter()
    if args.api_cases:
        fuzz_api(args.api_cases, args.seed + 100).print(f"Through the API ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
