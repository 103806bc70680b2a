"""Meshes of library shapes: ``GET /v1/shapes/{id}/mesh``, marching cubes through the compute queue."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

import anyio.to_thread
import trimesh

from backend.errors import NeuralShapesError
from backend.meshes.extraction import extract_mesh
from backend.service.errors import Unprocessable
from backend.service.services.compute import ComputeQueue
from backend.service.services.library import Library
from kernels.device import default_device

MAX_MESH_RESOLUTION = 1024  # sparse: cost follows the surface, about resolution^2
MAX_DENSE_RESOLUTION = 512  # dense: every one of resolution^3 grid nodes is evaluated


async def extract_shape_mesh(
    shape_id: str,
    *,
    library: Library,
    compute: ComputeQueue,
    resolution: int,
    method: Literal["sparse", "dense"],
    frame: Literal["source", "normalised"],
    disconnected: Callable[[], Awaitable[None]],
) -> tuple[str, trimesh.Trimesh]:
    """The shape's name and the marching-cubes mesh of its zero level set (``resolution`` grid points
    per axis; in its source frame or its normalised frame), made in a compute slot: stopped at the
    queue's deadline or soon after ``disconnected()`` returns. :class:`Unprocessable` for a dense grid
    over ``MAX_DENSE_RESOLUTION``."""
    if method == "dense" and resolution > MAX_DENSE_RESOLUTION:
        raise Unprocessable(
            f"dense meshes are limited to resolution {MAX_DENSE_RESOLUTION} ({MAX_DENSE_RESOLUTION}^3 grid nodes), got {resolution}; "
            f"method=sparse goes up to {MAX_MESH_RESOLUTION}"
        )
    shape = await anyio.to_thread.run_sync(library.load, shape_id)

    def work() -> trimesh.Trimesh:
        try:
            return extract_mesh(
                shape.architecture,
                shape.weights,
                resolution,
                method=method,
                transform=shape.transform if frame == "source" else None,
                device=default_device(),
            )
        except ValueError as error:
            raise NeuralShapesError(str(error)) from None

    return shape.name, await compute.run(work, what="mesh extraction", disconnected=disconnected)
