"""What goes over the wire as JSON: one model per direction (``...Create`` in, ``...Public`` out)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from backend.fitting import FitSettings

_DEFAULT_FIT = FitSettings()


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    service: str = "neural-shapes"
    version: str
    api_version: int


class ErrorPublic(BaseModel):
    detail: str = Field(description="one line saying what was wrong")


class UploadPublic(BaseModel):
    id: str
    name: str
    vertices: int
    faces: int
    source_sha256: str
    size_bytes: int
    created: str


class FitSettingsCreate(_In):
    """Fitting settings (see ``backend.fitting.FitSettings``); small values make quick, rough fits."""

    samples: int = Field(_DEFAULT_FIT.samples, ge=1000, le=20_000_000)
    max_steps: int = Field(_DEFAULT_FIT.max_steps, ge=1, le=1_000_000)
    target_surface_error: float = Field(_DEFAULT_FIT.target_surface_error, gt=0, le=1)
    batch_size: int = Field(_DEFAULT_FIT.batch_size, ge=64, le=1_048_576)
    learning_rate: float = Field(_DEFAULT_FIT.learning_rate, gt=0, le=1)
    beta: float = Field(_DEFAULT_FIT.beta, gt=0, le=10_000)
    eval_every: int = Field(_DEFAULT_FIT.eval_every, ge=1, le=100_000)
    eval_points: int = Field(_DEFAULT_FIT.eval_points, ge=100, le=1_000_000)
    seed: int = Field(_DEFAULT_FIT.seed, ge=0, le=2**31 - 1)


class ArchitectureCreate(_In):
    hidden_layers: int = Field(8, ge=1, le=62)
    width: int = Field(32, ge=1, le=1024)
    activation: Literal["relu", "sine"] = "relu"


class FitJobCreate(_In):
    """Fit staged uploads (all in one batched job); each becomes one library shape."""

    uploads: list[str] = Field(min_length=1, description="upload ids from POST /v1/uploads")
    settings: FitSettingsCreate = FitSettingsCreate()
    architecture: ArchitectureCreate = ArchitectureCreate()
    family: str = Field(
        "default",
        pattern=r"^(default|random(:\d{1,10})?)$",
        description="model family: 'default' (bundled, meta-learned) or 'random' / 'random:SEED' (seeded shared init)",
    )
    resolution: int = Field(128, ge=16, le=512, description="marching cubes grid for the Chamfer / F-score metrics")
    half_precision: bool = False
    keep_uploads: bool = Field(False, description="keep the uploads after success (else they are removed)")


class JobPublic(BaseModel):
    id: str
    kind: str
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: float = Field(description="0 to 1")
    stage: str
    error: str | None
    cancel_requested: bool
    created: str
    started: str | None
    finished: str | None
    inputs: dict[str, Any]
    outputs: dict[str, Any]


class JobList(BaseModel):
    items: list[JobPublic]
    total: int


class ShapePublic(BaseModel):
    id: str
    name: str
    family_id: str
    architecture: dict[str, Any]
    metrics: dict[str, float | None]
    size_bytes: int
    source_sha256: str
    created: str
    job_id: str | None


class ShapeDetail(ShapePublic):
    transform: dict[str, Any]
    provenance: dict[str, str]


class ShapeList(BaseModel):
    items: list[ShapePublic]
    total: int
