"""Render requests: ``POST /v1/render`` is a scene (:mod:`backend.rendering.scene`, the schema the
command line's ``render --scene`` reads too) of library shapes, an image size and a format, sphere-traced
through the compute queue."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

import anyio.to_thread
from pydantic import Field, model_validator

from backend.errors import NeuralShapesError
from backend.rendering.renderer import MAX_SIDE, check_size, render
from backend.rendering.scene import ObjectSpec, SceneSpec, build_scene
from backend.service.services.compute import ComputeQueue
from backend.service.services.library import Library
from kernels.device import default_device
from kernels.sphere_trace import TraceResult

MAX_OBJECTS = 256
# width x height x max_steps x objects: the sphere-tracing steps of the worst case, each evaluating
# every object (the default 160 steps allow 103 objects in a 1920x1080 frame, 25 in a 3840x2160 one).
MAX_RENDER_COST = 2**35


class RenderRequest(SceneSpec):
    """``format``: png (8-bit sRGB RGBA), rgba (float32 linear RGBA, top row first) or npz (every pass).

    Bounded cost: width x height x settings.max_steps x len(objects) <= 34,359,738,368 (MAX_RENDER_COST; else 422).
    """

    width: int = Field(512, ge=1, le=MAX_SIDE)
    height: int = Field(512, ge=1, le=MAX_SIDE)
    objects: list[ObjectSpec] = Field(min_length=1, max_length=MAX_OBJECTS)
    format: Literal["png", "rgba", "npz"] = "png"

    @model_validator(mode="after")
    def _bounded_cost(self) -> RenderRequest:
        cost = self.width * self.height * self.settings.max_steps * len(self.objects)
        if cost > MAX_RENDER_COST:
            raise ValueError(
                f"width x height x settings.max_steps x objects = {cost:,} is over the limit of {MAX_RENDER_COST:,}: "
                "render fewer pixels, steps or objects"
            )
        return self


async def render_request(
    request: RenderRequest, *, library: Library, compute: ComputeQueue, disconnected: Callable[[], Awaitable[None]]
) -> TraceResult:
    """Sphere-trace a request's scene (shapes read from ``library``) in a compute slot; stopped at the
    queue's deadline or soon after ``disconnected()`` returns. :class:`NeuralShapesError` (one line) for
    a scene the renderer refuses."""
    try:
        check_size(request.width, request.height)
    except ValueError as error:
        raise NeuralShapesError(str(error)) from None
    scene = await anyio.to_thread.run_sync(build_scene, request, library.load)

    def work() -> TraceResult:
        try:
            return render(scene, request.width, request.height, default_device())
        except ValueError as error:
            raise NeuralShapesError(str(error).splitlines()[0]) from None

    return await compute.run(work, what="render", disconnected=disconnected)
