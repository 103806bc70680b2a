"""Warp kernels of neural-shapes: mesh distances, neural SDF evaluation, marching cubes, sphere tracing.

One module per job, imported by what needs it (``kernels.mesh_sdf``, ``kernels.importance_sampling``,
``kernels.mlp_eval``, ``kernels.marching_cubes`` with ``kernels.narrow_band``, ``kernels.sphere_trace``,
``kernels.device``): this package imports none of them itself, because every Warp module parses its
kernels at import and a command that meshes should not pay for the tracer. Nothing here imports the
backend or torch: networks come in as a :class:`kernels.mlp_eval.MlpLayout` (any object with its
fields) and numpy weights.
"""
