"""``POST /v1/render``: sphere-trace a scene of library shapes."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from backend.errors import NeuralShapesError
from backend.rendering.renderer import render
from backend.service.api.binary import image_response
from backend.service.api.compute import run_compute
from backend.service.api.deps import JsonBody, ServiceDep
from backend.service.services.scenes import RenderRequest, build_scene
from kernels.device import default_device

router = APIRouter(prefix="/v1", tags=["render"])


@router.post(
    "/render",
    response_class=Response,
    dependencies=[JsonBody],
    responses={200: {"content": {"image/png": {}, "application/octet-stream": {}}}},
)
async def render_scene(request: Request, body: RenderRequest, service: ServiceDep) -> Response:
    """Camera + objects with transforms and CSG -> PNG, float32 RGBA or an .npz of every pass. Runs
    through the compute queue: stopped at the server's deadline or when the client disconnects."""
    scene = await run_in_threadpool(build_scene, body, service.library.load)

    def work() -> Response:
        try:
            result = render(scene, body.width, body.height, default_device())
        except ValueError as error:
            raise NeuralShapesError(str(error).splitlines()[0]) from None
        return image_response(result, body.format)

    return await run_compute(request, service.compute, work, what="render")
