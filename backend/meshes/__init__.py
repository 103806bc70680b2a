"""Meshes and point clouds: loading and normalising, training samples, quality metrics, and meshes back from a neural SDF."""
