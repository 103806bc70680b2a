"""Every Warp kernel of kernels/ compiles for CUDA (sm_90) with NVRTC, GPU or not, so the CUDA code paths
cannot break unseen on the CPU-only machines that run the tests: each module's kernels, and the kernels
made per network (batch evaluation with and without gradients, the sphere tracer's march and shade)."""

from __future__ import annotations

import importlib

import pytest
import warp as wp

from backend.shapes.architecture import Architecture
from kernels.mlp_eval import _batch_kernel, neural_field
from kernels.sphere_trace import _tracer

pytestmark = pytest.mark.slow  # NVRTC takes a minute for them all

MODULES = ("importance_sampling", "marching_cubes", "mesh_raycast", "mesh_sdf", "mlp_eval", "narrow_band")


@pytest.mark.parametrize("name", MODULES)
def test_module_kernels_compile_for_cuda(name, tmp_path):
    module = importlib.import_module(f"kernels.{name}")
    assert wp.compile_aot_module(module, arch=90, module_dir=tmp_path)


@pytest.mark.parametrize(
    "architecture", [Architecture.for_activation("relu", 2, 8), Architecture.for_activation("sine", 2, 8)]
)
def test_network_kernels_compile_for_cuda(architecture, tmp_path):
    """Small nets of both activations: the code is the same for every size, only compile time grows."""
    field = neural_field(architecture)
    for kernel in (_batch_kernel(field, False), _batch_kernel(field, True), *_tracer(field)):
        assert wp.compile_aot_module(kernel.module, arch=90, module_dir=tmp_path), kernel.key
