"""Jobs: ``/v1/jobs`` (start a fit, status, list, cancel)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter

from backend.fitting.pipeline import Quality
from backend.service.api.deps import JsonBody, Limit, Offset, ServiceDep
from backend.service.api.schemas import FitJobCreate, JobList, JobPublic
from backend.service.errors import TooLarge
from backend.service.services.fit_job import check_fit_cost
from backend.service.services.job_queue import STATES

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.post("/fit", status_code=202, response_model=JobPublic, dependencies=[JsonBody])
def start_fit(body: FitJobCreate, service: ServiceDep) -> dict:
    """Fit staged meshes in one batched job; poll ``GET /v1/jobs/{id}`` for progress.

    Bounded memory (else 422; the service fits up to its ``fit_batch`` meshes together):
    settings.batch_size x architecture.width x architecture.hidden_layers x meshes fitted together
    <= 268,435,456 (MAX_FIT_ACTIVATIONS) and settings.samples x meshes fitted together <= 67,108,864
    (MAX_FIT_SAMPLES).
    """
    limit = service.settings.max_meshes_per_job
    if len(body.uploads) > limit:
        raise TooLarge(f"{len(body.uploads)} meshes in one job, the limit is {limit}")
    nets = [body.architecture, *Quality(body.quality).escalation]  # the largest one costs most
    check_fit_cost(
        meshes=len(body.uploads),
        fit_batch=service.settings.fit_batch,
        batch_size=body.settings.batch_size,
        width=max(net.width for net in nets),
        hidden_layers=max(net.hidden_layers for net in nets),
        samples=body.settings.samples,
    )
    for upload_id in body.uploads:
        service.uploads.get(upload_id)  # 400 / 404 now rather than a failed job later
    return service.jobs.submit("fit", body.model_dump())


@router.get("", response_model=JobList)
def list_jobs(
    service: ServiceDep,
    state: Literal[STATES] | None = None,
    kind: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
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
