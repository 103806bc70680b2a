"""Fitting neural SDFs: batched fitting to meshes, fitting from surface points, meta-learning a family, and the mesh -> ``.h5`` pipeline."""
