"""The trainers' torch device choice (CUDA when present, NEURAL_SHAPES_DEVICE overrides, bad names refused)
and the CPU threads torch and Warp may use (affinity mask, cgroup quota)."""

import pytest
import torch

from backend import torch_device
from backend.errors import NeuralShapesError
from backend.torch_device import training_device
from kernels import device


def test_default_is_cuda_exactly_when_torch_sees_one(monkeypatch):
    monkeypatch.delenv("NEURAL_SHAPES_DEVICE", raising=False)
    assert training_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_the_variable_overrides_and_bad_names_are_one_line_errors(monkeypatch):
    monkeypatch.setenv("NEURAL_SHAPES_DEVICE", "cpu")
    assert training_device() == torch.device("cpu")
    monkeypatch.setenv("NEURAL_SHAPES_DEVICE", "abacus:3")
    with pytest.raises(NeuralShapesError, match="abacus:3.*not a torch device"):
        training_device()
    if not torch.cuda.is_available():
        monkeypatch.setenv("NEURAL_SHAPES_DEVICE", "cuda:0")
        with pytest.raises(NeuralShapesError, match="no CUDA device"):
            training_device()


def test_available_cores_follow_affinity_and_the_cgroup_quota(monkeypatch, tmp_path):
    cpu_max = tmp_path / "cpu.max"
    monkeypatch.setattr(device, "CGROUP_CPU_MAX", cpu_max)
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5})
    assert device.available_cores() == 6  # no cgroup file: the affinity mask
    cpu_max.write_text("max 100000\n")
    assert device.available_cores() == 6
    cpu_max.write_text("150000 100000\n")  # 1.5 cores of quota: two threads may run
    assert device.available_cores() == 2 and device.cpu_workers() == 2
    cpu_max.write_text("20000 100000\n")
    assert device.available_cores() == 1
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: {3})
    cpu_max.write_text("max 100000\n")
    assert device.available_cores() == 1


def test_available_cores_take_a_schedulers_share(monkeypatch):
    monkeypatch.setattr(device, "CGROUP_CPU_MAX", device.Path("/nonexistent"))
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setenv("NEURAL_SHAPES_THREADS", "3")  # a Ray task given 3 CPUs of the node's 8
    assert device.available_cores() == 3
    monkeypatch.setenv("NEURAL_SHAPES_THREADS", "16")  # never more than the mask allows
    assert device.available_cores() == 8
    monkeypatch.setenv("NEURAL_SHAPES_THREADS", "lots")  # not a count: ignored
    assert device.available_cores() == 8


def test_torch_threads_shrink_to_the_available_cores_and_never_grow(monkeypatch):
    threads = torch.get_num_threads()
    try:
        monkeypatch.setattr(torch_device, "available_cores", lambda: 1)
        torch.set_num_threads(2)
        assert torch_device.limit_torch_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.setattr(torch_device, "available_cores", lambda: 8)
        assert torch_device.limit_torch_threads() == 1  # a smaller setting stays
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_torch_threads_give_way_to_a_busy_process_and_come_back():
    """Next to one busy process, torch keeps to the cores left (a thread sharing a core with it would slow
    every operation to that core's share); once it stops, the threads come back."""
    import subprocess
    import sys
    import time

    import torch

    from backend.torch_device import SharedCores

    if device.available_cores() < 2 or not device.Path("/proc/stat").exists():
        pytest.skip("needs two cores and /proc/stat")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cores = SharedCores()
        time.sleep(0.5)
        if (cores.others_busy() or 0.0) > 0.4:
            pytest.skip("the machine is busy already: nothing to compare with")
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(1.0)
            assert cores.adjust() == 1
        finally:
            busy.kill()
            busy.wait()
        time.sleep(1.0)
        assert cores.adjust() == 2
    finally:
        torch.set_num_threads(threads)


def test_leaving_shared_cores_restores_the_threads_it_started_with():
    """A fit that ended while another process was busy must not leave the next fit fewer threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch_device.SharedCores():
            torch.set_num_threads(1)  # as adjust() does next to a busy process
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
