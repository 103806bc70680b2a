"""Shared fixtures: the bundled samples, analytic meshes, the installed command line, the scripts the add-on
tests run with the bpy module, and a client of a test module's service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import trimesh

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the installed ``neural-shapes`` entry point of this interpreter's environment."""
    exe = Path(sys.executable).with_name("neural-shapes")
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=timeout)


def blender_script_report(script: str, *args: object, resources: Path, timeout: float = 300) -> dict:
    """Run ``tests/blender/<script> args...`` with this interpreter (the bpy module), Blender's user resources in
    the folder ``resources`` (the user's own Blender left alone); the script must succeed, and its report is
    the JSON of its last output line."""
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(resources)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "blender" / script), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run with one torch thread: for tiny tensors on a shared 2-core machine a second thread only adds
    waiting (10-100x slower when the other core is busy)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def single_torch_thread() -> Iterator[None]:
    """:func:`one_torch_thread` for a whole test module (``pytestmark = pytest.mark.usefixtures(...)``)."""
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """The add-on as the command line builds it: (extension zip, legacy add-on zip for Blender < 4.2)."""
    from backend import __version__

    out = tmp_path_factory.mktemp("addon")
    result = run_cli("build-addon", "-o", out)
    assert result.returncode == 0, result.stderr
    return out / f"neural_shapes-{__version__}.zip", out / f"neural_shapes-{__version__}-legacy.zip"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A test module's own service with default settings (modules that need others define their own)."""
    from tests.service_server import ServerProcess

    process = ServerProcess(tmp_path_factory.mktemp("service") / "data")
    yield process
    process.terminate()


@pytest.fixture(scope="module")
def client(server):
    """The add-on's stdlib client of the test module's own ``server`` fixture (a ``tests.service_server.ServerProcess``)."""
    return server.client


@pytest.fixture(params=["cpu", pytest.param("cuda:0", marks=pytest.mark.gpu)])
def device(request) -> str:
    """Each Warp device a kernel test runs on: the CPU always, the first GPU where there is one (else skipped)."""
    if request.param != "cpu":
        import warp as wp

        if not wp.is_cuda_available():
            pytest.skip("no CUDA device")
    return request.param


@pytest.fixture(scope="session")
def sphere_mesh() -> trimesh.Trimesh:
    """Icosphere of radius 0.5 at the origin (max chord error ~2e-4)."""
    return trimesh.creation.icosphere(subdivisions=5, radius=0.5)


@pytest.fixture(scope="session")
def box_mesh() -> trimesh.Trimesh:
    return trimesh.creation.box(extents=(1.0, 0.6, 0.8))


@pytest.fixture(scope="session")
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
