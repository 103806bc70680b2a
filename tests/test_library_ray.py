"""``neural-shapes convert --ray`` on a real local Ray cluster: a head and a second worker node, each a
separate raylet with one CPU. The collection of :mod:`tests.test_library` converts to the same manifest
states and loadable outputs; a node killed while it runs a batch: the batch completes on the other."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend.shapes.shape_file import read_shape
from tests.conftest import run_cli
from tests.test_library import BROKEN, TINY_CLI, good_stems, outputs, states, write_test_collection

ray_cluster_utils = pytest.importorskip("ray.cluster_utils")

pytestmark = pytest.mark.slow
NODE = {"num_cpus": 1, "object_store_memory": 100 * 2**20}


@pytest.fixture(scope="module")
def cluster():
    """Head + one worker node, separate processes on this machine; the test process is no Ray driver."""
    head = ray_cluster_utils.Cluster(
        initialize_head=True, connect=False, head_node_args={**NODE, "include_dashboard": False}
    )
    worker = head.add_node(**NODE)
    head.wait_for_nodes()
    yield head, worker
    head.shutdown()


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    return write_test_collection(tmp_path_factory.mktemp("collection"))


def test_ray_converts_the_collection_like_the_local_run(cluster, collection, tmp_path):
    head, _ = cluster
    dest = tmp_path / "shapes"
    result = run_cli("convert", collection, "-o", dest, "--ray", head.address, *TINY_CLI, "--json")
    assert result.returncode == 1, result.stderr  # the four broken files
    report = json.loads(result.stdout)
    assert report["run"]["executor"].startswith("ray (2 nodes, 2 CPUs")
    assert (report["run"]["converted"], report["run"]["failed"]) == (56, 4)
    assert {name for name, state in states(dest).items() if state == "failed"} == set(BROKEN)
    assert outputs(dest) == good_stems(collection)
    for path in dest.glob("*.h5"):
        read_shape(path)
    workers = {row_worker for row_worker in _workers(dest) if row_worker}
    assert len(workers) >= 2  # both nodes' worker processes took batches
    again = run_cli("convert", collection, "-o", dest, "--ray", head.address, *TINY_CLI, "--json")
    assert json.loads(again.stdout)["run"]["to_convert"] == 0


def test_a_node_killed_during_a_batch_the_batch_completes_elsewhere(cluster, collection, tmp_path):
    head, worker = cluster
    src = tmp_path / "src"
    src.mkdir()
    for path in sorted(collection.glob("*.ply"))[:12]:
        shutil.copy(path, src / path.name)
    dest = tmp_path / "shapes"
    # More steps than the other tests: a batch must still be running when its node is killed.
    command = [Path(sys.executable).with_name("neural-shapes"), "convert", src, "-o", dest, "--ray", head.address]
    command += ["--samples", "20000", "--max-steps", "400", "--resolution", "32", "--batch-size", "6", "--json"]
    driver = subprocess.Popen(list(map(str, command)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    raylet = worker.all_processes["raylet"][0].process.pid
    deadline = time.monotonic() + 240
    while not _running_batches_under(raylet):
        assert driver.poll() is None and time.monotonic() < deadline, "no batch ever ran on the worker node"
        time.sleep(0.1)
    head.remove_node(worker, allow_graceful=False)  # the node and its worker processes die mid-batch
    stdout, stderr = driver.communicate(timeout=300)
    assert driver.returncode == 0 and stdout, stderr[-3000:]
    report = json.loads(stdout)
    assert (report["run"]["converted"], report["run"]["failed"]) == (12, 0)
    assert outputs(dest) == good_stems(src)
    assert set(states(dest).values()) == {"done"}


def _running_batches_under(ancestor: int) -> list[int]:
    """Processes running our Ray task (Ray titles them ``ray::convert_batch``) that descend from ``ancestor``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if b"ray::convert_batch" in (proc / "cmdline").read_bytes() and ancestor in _ancestors(int(proc.name)):
                found.append(int(proc.name))
        except OSError:  # gone meanwhile
            continue
    return found


def _ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state: the parent's pid
        chain.append(pid)
    return chain


def _workers(dest: Path) -> list[str]:
    from backend.library.manifest import Manifest

    manifest = Manifest(dest)
    try:
        return [row["worker"] for row in manifest.rows("done")]
    finally:
        manifest.close()
