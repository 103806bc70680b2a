"""A real ``neural-shapes serve`` in a subprocess, for the service tests and the benchmark."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blender_addon.client import Client

QUICK_FIT = {"samples": 20000, "max_steps": 100, "target_surface_error": 0.02, "batch_size": 4096}
SLOW_FIT = {
    "samples": 20000,
    "max_steps": 1_000_000,
    "target_surface_error": 1e-6,
    "batch_size": 4096,
}  # runs until cancelled


class ServerProcess:
    """``neural-shapes serve --port 0`` on a data folder; the URL is parsed from its first line."""

    def __init__(self, data_dir: Path, *extra: str, start_timeout: float = 120.0):
        exe = Path(sys.executable).with_name("neural-shapes")
        self.data_dir = Path(data_dir)
        self.stderr_path = self.data_dir.parent / f"{self.data_dir.name}-server.log"
        self._stderr = open(self.stderr_path, "ab")  # noqa: SIM115 (open for the server's lifetime)
        env = {**os.environ, "NEURAL_SHAPES_DEVICE": "cpu"}
        self.process = subprocess.Popen(
            [str(exe), "serve", "--port", "0", "--data-dir", str(self.data_dir), "--torch-threads", "1", *extra],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )
        line = _read_line(self.process, start_timeout)
        if not line.startswith("listening on http://127.0.0.1:"):
            self.stop()
            raise RuntimeError(f"server did not start: first line {line!r}; log:\n{self.log()}")
        self.url = line.split()[-1]
        self.port = int(self.url.rsplit(":", 1)[1])
        self.client = Client.from_data_dir(self.url, self.data_dir)

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def terminate(self, timeout: float = 30.0, sig: int = signal.SIGTERM) -> int:
        """SIGTERM (or ``sig``) and wait; returns the exit code."""
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            self._stderr.close()

    def kill(self) -> None:
        """SIGKILL: no chance to clean up."""
        self.process.kill()
        self.process.wait(30)
        self._stderr.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        self._stderr.close()


def _read_line(process: subprocess.Popen, timeout: float) -> str:
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0].strip() if result else ""


@dataclass
class Answer:
    """One HTTP exchange: status, headers (lower-case names), body, seconds from sending to the last byte."""

    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def detail(self) -> str:
        return json.loads(self.body).get("detail", "") if self.headers.get("content-type") == "application/json" else ""


def call(
    server: ServerProcess,
    method: str,
    path: str,
    *,
    json_body: Any = None,
    body: bytes | None = None,
    timeout: float = 60.0,
) -> Answer:
    """One request with the token on a fresh connection (http.client: exact timings, every header, any
    status); ``json_body`` is sent as JSON, ``body`` as application/octet-stream."""
    headers = {"Authorization": f"Bearer {server.client.token}"}
    if json_body is not None:
        body = json.dumps(json_body).encode()
        headers["Content-Type"] = "application/json"
    elif body is not None:
        headers["Content-Type"] = "application/octet-stream"
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    started = time.perf_counter()
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        return Answer(
            response.status, {k.lower(): v for k, v in response.getheaders()}, data, time.perf_counter() - started
        )
    finally:
        conn.close()
