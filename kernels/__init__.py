"""Warp kernels of neural-shapes: mesh distances, neural SDF evaluation, marching cubes, sphere tracing.

One module per job; this facade re-exports the public host functions and types. Nothing here imports
the backend or torch: networks come in as an :class:`MlpLayout` (any object with its fields) and
numpy weights.
"""

from kernels.device import default_device, init_warp
from kernels.importance_sampling import draw_proposals
from kernels.marching_cubes import SurfaceMesh, extract_dense, extract_neural, extract_sparse, sample_grid
from kernels.mesh_sdf import MeshDistance, SignMethod
from kernels.mlp_eval import (
    LipschitzBound,
    MlpLayout,
    NeuralField,
    Weights,
    evaluate,
    evaluate_with_gradient,
    lipschitz_bound,
    neural_field,
)
from kernels.sphere_trace import CSG, RayCamera, TraceObjects, TraceResult, TraceSettings, trace

__all__ = [
    "CSG", "LipschitzBound", "MeshDistance", "MlpLayout", "NeuralField", "RayCamera", "SignMethod", "SurfaceMesh",
    "TraceObjects", "TraceResult", "TraceSettings", "Weights", "default_device", "draw_proposals", "evaluate",
    "evaluate_with_gradient", "extract_dense", "extract_neural", "extract_sparse", "init_warp", "lipschitz_bound",
    "neural_field", "sample_grid", "trace",
]
