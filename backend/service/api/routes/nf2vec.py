"""nf2vec: ``/v1/nf2vec`` (the model, and jobs making shapes) and, per library shape, ``similar`` and ``classify``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from backend.service.api.deps import JsonBody, ServiceDep
from backend.service.api.schemas import (
    DECODER_DESCRIPTION,
    ClassProbability,
    CompleteJobCreate,
    GenerateJobCreate,
    InterpolateJobCreate,
    JobPublic,
    Nf2vecDecoderField,
    Nf2vecPublic,
    SimilarShape,
)

router = APIRouter(prefix="/v1", tags=["nf2vec"])
MAX_NEIGHBOURS = 100
DecoderQuery = Annotated[Nf2vecDecoderField, Query(description=DECODER_DESCRIPTION)]


@router.get("/nf2vec", response_model=Nf2vecPublic)
def nf2vec_info(service: ServiceDep) -> dict:
    """The nf2vec model the service uses (503 while it has none)."""
    return service.nf2vec.info()


@router.post("/nf2vec/interpolate", status_code=202, response_model=JobPublic, dependencies=[JsonBody])
def start_interpolate(body: InterpolateJobCreate, service: ServiceDep) -> dict:
    """In-betweens of two shapes in embedding or weight space; poll ``GET /v1/jobs/{id}``."""
    inputs = service.nf2vec_jobs.interpolate_inputs(
        a=body.a, b=body.b, times=body.times, count=body.count, space=body.space, decoder=body.decoder
    )
    return service.jobs.submit("interpolate", inputs)


@router.post("/nf2vec/generate", status_code=202, response_model=JobPublic, dependencies=[JsonBody])
def start_generate(body: GenerateJobCreate, service: ServiceDep) -> dict:
    """New shapes sampled from the model; poll ``GET /v1/jobs/{id}``."""
    inputs = service.nf2vec_jobs.generate_inputs(
        count=body.count, seed=body.seed, class_name=body.class_name, truncation=body.truncation, decoder=body.decoder
    )
    return service.jobs.submit("generate", inputs)


@router.post("/nf2vec/complete", status_code=202, response_model=JobPublic, dependencies=[JsonBody])
def start_complete(body: CompleteJobCreate, service: ServiceDep) -> dict:
    """The whole shape of a partial one (a library shape or a staged mesh); poll ``GET /v1/jobs/{id}``."""
    inputs = service.nf2vec_jobs.complete_inputs(shape=body.shape, upload=body.upload, decoder=body.decoder)
    return service.jobs.submit("complete", inputs)


@router.get("/shapes/{shape_id}/similar", response_model=list[SimilarShape])
def similar_shapes(
    shape_id: str,
    service: ServiceDep,
    k: Annotated[int, Query(ge=1, le=MAX_NEIGHBOURS)] = 5,
    decoder: DecoderQuery = None,
) -> list[dict]:
    """The k library shapes nearest by the decoder's codes (of the model's family, the shape left out)."""
    return service.nf2vec.similar(shape_id, k, decoder)


@router.get("/shapes/{shape_id}/classify", response_model=list[ClassProbability])
def classify_shape(shape_id: str, service: ServiceDep, decoder: DecoderQuery = None) -> list[dict]:
    """Every class the decoder knows with its probability, most likely first."""
    return service.nf2vec.classify(shape_id, decoder)
