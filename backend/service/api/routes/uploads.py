"""Staged meshes for jobs: ``/v1/uploads``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from backend.service.api.deps import BinaryBody, ServiceDep
from backend.service.api.schemas import UploadPublic
from backend.service.services.uploads import MESH_FORMATS

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])
FormatQuery = Annotated[str, Query(description=f"one of {', '.join(MESH_FORMATS)}")]


@router.post("", status_code=201, response_model=UploadPublic, dependencies=[BinaryBody])
async def upload_mesh(
    request: Request,
    service: ServiceDep,
    format: FormatQuery,
    name: Annotated[str, Query(max_length=200)] = "mesh",
    vertex_count: Annotated[int | None, Query(ge=1, description="for format=raw: vertices before the faces")] = None,
) -> dict:
    """Check, normalise and stage one mesh (body: the raw arrays, an .npz or a mesh file)."""
    data = await request.body()
    return await run_in_threadpool(
        lambda: service.uploads.add(data, format=format, name=name, vertex_count=vertex_count)
    )


@router.get("/{upload_id}", response_model=UploadPublic)
def get_upload(upload_id: str, service: ServiceDep) -> dict:
    return service.uploads.get(upload_id)


@router.delete("/{upload_id}", status_code=204)
def delete_upload(upload_id: str, service: ServiceDep) -> None:
    service.uploads.delete(upload_id)
