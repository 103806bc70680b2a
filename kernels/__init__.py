"""Warp kernels of neural-shapes: mesh distances, neural SDF evaluation, marching cubes, sphere tracing.

One module per job; this facade re-exports the public host functions and types.
"""

from kernels.device import default_device, init_warp
from kernels.marching_cubes import SurfaceMesh, extract_dense, extract_neural, extract_sparse, sample_grid
from kernels.mesh_sdf import MeshDistance, SignMethod
from kernels.mlp_eval import LipschitzBound, NeuralField, evaluate, lipschitz_bound, neural_field
from kernels.sphere_trace import CSG, RayCamera, TraceObjects, TraceResult, TraceSettings, trace

__all__ = [
    "CSG", "LipschitzBound", "MeshDistance", "NeuralField", "RayCamera", "SignMethod", "SurfaceMesh",
    "TraceObjects", "TraceResult", "TraceSettings", "default_device", "evaluate", "extract_dense",
    "extract_neural", "extract_sparse", "init_warp", "lipschitz_bound", "neural_field", "sample_grid", "trace",
]
