"""The shape library: ``/v1/shapes`` (list, get, delete, download, import, mesh extraction)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from backend.service.api.binary import attachment, mesh_response
from backend.service.api.compute import client_disconnected
from backend.service.api.deps import BinaryBody, Limit, Offset, ServiceDep
from backend.service.api.schemas import ShapeDetail, ShapeList, ShapePublic
from backend.service.services.meshing import MAX_DENSE_RESOLUTION, MAX_MESH_RESOLUTION, extract_shape_mesh

router = APIRouter(prefix="/v1/shapes", tags=["shapes"])


@router.get("", response_model=ShapeList)
def list_shapes(service: ServiceDep, limit: Limit = 100, offset: Offset = 0) -> dict:
    items, total = service.library.list(limit=limit, offset=offset)
    return {"items": items, "total": total}


@router.post("/import", status_code=201, response_model=ShapePublic, dependencies=[BinaryBody])
async def import_shape(
    request: Request, service: ServiceDep, name: Annotated[str | None, Query(max_length=200)] = None
) -> dict:
    """Import a ``.h5`` neural shape file (body: its bytes); it is validated and re-written."""
    data = await request.body()
    return await run_in_threadpool(lambda: service.library.import_bytes(data, name=name))


@router.get("/{shape_id}", response_model=ShapeDetail)
def get_shape(shape_id: str, service: ServiceDep) -> dict:
    return service.library.get(shape_id)


@router.delete("/{shape_id}", status_code=204)
def delete_shape(shape_id: str, service: ServiceDep) -> None:
    service.library.delete(shape_id)


@router.get("/{shape_id}/file", response_class=Response, responses={200: {"content": {"application/x-hdf5": {}}}})
def download_shape(shape_id: str, service: ServiceDep) -> Response:
    """The ``.h5`` file."""
    record = service.library.get(shape_id)
    data = service.library.file_path(shape_id).read_bytes()
    return Response(
        data, media_type="application/x-hdf5", headers={"Content-Disposition": attachment(f"{record['name']}.h5")}
    )


@router.get("/{shape_id}/mesh", response_class=Response, responses={200: {"content": {"application/octet-stream": {}}}})
async def shape_mesh(
    request: Request,
    shape_id: str,
    service: ServiceDep,
    resolution: Annotated[
        int,
        Query(
            ge=8,
            le=MAX_MESH_RESOLUTION,
            description=f"grid points per axis; at most {MAX_DENSE_RESOLUTION} with method=dense",
        ),
    ] = 256,
    method: Literal["sparse", "dense"] = "sparse",
    frame: Annotated[Literal["source", "normalised"], Query(description="source: the fitted mesh's frame")] = "source",
    format: Literal["raw", "npz", "obj", "ply", "stl", "glb"] = "raw",
) -> Response:
    """Marching-cubes mesh of the zero level set (see docs/api.md for the raw layout). Runs through the
    compute queue: stopped at the server's deadline or when the client disconnects."""
    name, mesh = await extract_shape_mesh(
        shape_id,
        library=service.library,
        compute=service.compute,
        resolution=resolution,
        method=method,
        frame=frame,
        disconnected=lambda: client_disconnected(request),
    )
    return await run_in_threadpool(mesh_response, mesh, format, name)
