"""Jobs: ``/v1/jobs`` (start a fit, status, list, cancel)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from backend.service.api.deps import JsonBody, ServiceDep
from backend.service.api.schemas import FitJobCreate, JobList, JobPublic
from backend.service.errors import TooLarge

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.post("/fit", status_code=202, response_model=JobPublic, dependencies=[JsonBody])
def start_fit(body: FitJobCreate, service: ServiceDep) -> dict:
    """Fit staged meshes in one batched job; poll ``GET /v1/jobs/{id}`` for progress."""
    limit = service.settings.max_meshes_per_job
    if len(body.uploads) > limit:
        raise TooLarge(f"{len(body.uploads)} meshes in one job, the limit is {limit}")
    for upload_id in body.uploads:
        service.uploads.get(upload_id)  # 400 / 404 now rather than a failed job later
    return service.jobs.submit("fit", body.model_dump())


@router.get("", response_model=JobList)
def list_jobs(
    service: ServiceDep,
    state: str | None = None,
    kind: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict:
    items, total = service.jobs.list(state=state, kind=kind, limit=limit, offset=offset)
    return {"items": items, "total": total}


@router.get("/{job_id}", response_model=JobPublic)
def get_job(job_id: str, service: ServiceDep) -> dict:
    return service.jobs.get(job_id)


@router.post("/{job_id}/cancel", response_model=JobPublic)
def cancel_job(job_id: str, service: ServiceDep) -> dict:
    """Queued jobs end at once; running ones stop at their next check (state stays running until then)."""
    return service.jobs.cancel(job_id)


