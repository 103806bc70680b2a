"""``POST /v1/render``: sphere-trace a scene of library shapes."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from backend.service.api.binary import image_response
from backend.service.api.compute import client_disconnected
from backend.service.api.deps import JsonBody, ServiceDep
from backend.service.services.scenes import RenderRequest, render_request

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
    result = await render_request(
        body, library=service.library, compute=service.compute, disconnected=lambda: client_disconnected(request)
    )
    return await run_in_threadpool(image_response, result, body.format)
