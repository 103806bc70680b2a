"""``POST /v1/render``: sphere-trace a scene of library shapes."""

from __future__ import annotations

from fastapi import APIRouter, Response

from backend.errors import NeuralShapesError
from backend.rendering import render
from backend.service.api.binary import image_response
from backend.service.api.deps import JsonBody, ServiceDep
from backend.service.scenes import RenderRequest, build_scene
from kernels.device import default_device

router = APIRouter(prefix="/v1", tags=["render"])


@router.post(
    "/render",
    response_class=Response,
    dependencies=[JsonBody],
    responses={200: {"content": {"image/png": {}, "application/octet-stream": {}}}},
)
def render_scene(body: RenderRequest, service: ServiceDep) -> Response:
    """Camera + objects with transforms and CSG -> PNG, float32 RGBA or an .npz of every pass."""
    scene = build_scene(body, service.library.load)
    with service.compute:
        try:
            result = render(scene, body.width, body.height, default_device())
        except ValueError as error:
            raise NeuralShapesError(str(error).splitlines()[0]) from None
    return image_response(result, body.format)
