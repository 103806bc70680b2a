"""Rendering neural shapes: scenes (camera, placed objects, CSG), framing and PNG output over the Warp sphere tracer."""
