"""Datasets made here: the procedural training collection and partial (cut) copies of its meshes for completion."""
