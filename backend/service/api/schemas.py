"""What goes over the wire as JSON: one model per direction (``...Create`` in, ``...Public`` out)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from backend.fitting.batched import FitSettings
from backend.shapes.architecture import MAX_HIDDEN_LAYERS, MAX_PARAMETERS, MAX_WIDTH, Architecture

_DEFAULT_FIT = FitSettings()
ID_PATTERN = r"^[0-9a-f]{32}$"  # what backend.service.errors.check_id accepts
Id = Annotated[str, Field(pattern=ID_PATTERN, description="32 lowercase hexadecimal characters")]
MAX_NF2VEC_SHAPES = 32  # shapes one interpolate / generate job makes


def _json_integer(value: Any) -> Any:
    if isinstance(value, (bool, str)):  # JSON true / "5" are no integers; 5.0 is (JSON Schema says so)
        raise ValueError("Input should be a valid integer")
    return value


def json_integer(**bounds: int) -> Any:
    """An integer as JSON Schema has it: 5 or 5.0, not 5.5, "5" or true (the models are strict otherwise).
    ``bounds`` (ge, le) sit inside the type, so they reach the schema when the field may also be null."""
    return Annotated[int, Field(strict=False, **bounds), BeforeValidator(_json_integer)]


Integer = json_integer()


class _In(BaseModel):
    # strict: no quiet coercion ("5" or false for an integer), so the JSON schema is the whole contract
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


def exactly_one_of(*names: str) -> Callable[[dict[str, Any]], None]:
    """JSON schema for "give exactly one of ``names``, not null" (a pydantic validator checks it): each
    branch repeats the field's own constraints, so generators do not take the branch's for the whole."""

    def extra(schema: dict[str, Any]) -> None:
        def given(name: str) -> dict[str, Any]:
            return next(option for option in schema["properties"][name]["anyOf"] if option.get("type") != "null")

        schema["oneOf"] = [{"required": [name], "properties": {name: given(name)}} for name in names]

    return extra


M = TypeVar("M", bound=BaseModel)


def _given_one_of(model: M, a: str, b: str) -> M:
    """``model``, checked to give exactly one of its fields ``a`` and ``b`` (the other None)."""
    if (getattr(model, a) is None) == (getattr(model, b) is None):
        raise ValueError(f"give either '{a}' or '{b}'")
    return model


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
    """Fitting settings (see ``backend.fitting.batched.FitSettings``); small values make quick, rough fits."""

    samples: Integer = Field(_DEFAULT_FIT.samples, ge=1000, le=20_000_000)
    max_steps: Integer = Field(_DEFAULT_FIT.max_steps, ge=1, le=1_000_000)
    target_surface_error: float = Field(_DEFAULT_FIT.target_surface_error, gt=0, le=1)
    batch_size: Integer = Field(_DEFAULT_FIT.batch_size, ge=64, le=1_048_576)
    learning_rate: float = Field(_DEFAULT_FIT.learning_rate, gt=0, le=1)
    beta: float = Field(_DEFAULT_FIT.beta, gt=0, le=10_000)
    eval_every: Integer = Field(_DEFAULT_FIT.eval_every, ge=1, le=100_000)
    eval_points: Integer = Field(_DEFAULT_FIT.eval_points, ge=100, le=1_000_000)
    seed: Integer = Field(_DEFAULT_FIT.seed, ge=0, le=2**31 - 1)
    open_meshes: Literal["shell", "solid"] = Field(
        _DEFAULT_FIT.open_meshes.value,
        description="a mesh with large openings: a thin shell around its faces, or the solid its winding number closes",
    )


class ArchitectureCreate(_In):
    model_config = ConfigDict(
        json_schema_extra={
            "description": f"at most {MAX_PARAMETERS:,} parameters in all (1024 wide: up to 4 hidden layers)"
        }
    )

    hidden_layers: Integer = Field(8, ge=1, le=MAX_HIDDEN_LAYERS)
    width: Integer = Field(32, ge=1, le=MAX_WIDTH)
    activation: Literal["relu", "sine"] = "relu"

    @model_validator(mode="after")
    def _within_parameter_limit(self) -> ArchitectureCreate:
        Architecture(hidden_layers=self.hidden_layers, width=self.width)  # raises ValueError naming the limit
        return self


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
    resolution: Integer = Field(128, ge=16, le=512, description="marching cubes grid for the Chamfer / F-score metrics")
    half_precision: bool = False
    keep_uploads: bool = Field(False, description="keep the uploads after success (else they are removed)")
    quality: Literal["standard", "high"] = Field(
        "standard",
        description="high: shapes the net cannot hold to the targets are fitted again with 8x64, then 8x128 nets"
        " (slower, larger files, not usable by nf2vec); the shape's provenance says what each net reached",
    )


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


Nf2vecDecoderField = Literal["latent", "implicit"] | None
DECODER_DESCRIPTION = (
    "latent (nets of the latent family, no refit) or implicit (nf2vec's decoder, decode and fit); "
    "none: the model's default (GET /v1/nf2vec)"
)


class InterpolateJobCreate(_In):
    """In-betweens of two library shapes: at each t of ``times`` (0 = a, 1 = b), or ``count`` evenly spaced."""

    model_config = ConfigDict(json_schema_extra=exactly_one_of("times", "count"))

    a: Id
    b: Id
    times: list[Annotated[float, Field(ge=-1.0, le=2.0)]] | None = Field(
        None, min_length=1, max_length=MAX_NF2VEC_SHAPES
    )
    count: json_integer(ge=1, le=MAX_NF2VEC_SHAPES) | None = None
    space: Literal["embedding", "weights"] = "embedding"
    decoder: Nf2vecDecoderField = Field(None, description=DECODER_DESCRIPTION)

    @model_validator(mode="after")
    def _times_or_count(self) -> InterpolateJobCreate:
        return _given_one_of(self, "times", "count")


class GenerateJobCreate(_In):
    """New shapes from the generator; the same seed makes the same shapes."""

    count: Integer = Field(1, ge=1, le=MAX_NF2VEC_SHAPES)
    seed: Integer = Field(0, ge=0, le=2**31 - 1)
    class_name: str | None = Field(
        None,
        alias="class",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$",
        description="a class from GET /v1/nf2vec; none: any",
    )
    truncation: float | None = Field(
        None, ge=0.0, le=1.0, description="0 the class's typical shape, 1 its full spread; none: 1"
    )
    decoder: Nf2vecDecoderField = Field(None, description=DECODER_DESCRIPTION)


class CompleteJobCreate(_In):
    """Complete a partial shape: a library shape, or a staged mesh fitted first."""

    model_config = ConfigDict(json_schema_extra=exactly_one_of("shape", "upload"))

    shape: Id | None = None
    upload: Id | None = None
    decoder: Nf2vecDecoderField = Field(None, description=DECODER_DESCRIPTION)

    @model_validator(mode="after")
    def _shape_or_upload(self) -> CompleteJobCreate:
        return _given_one_of(self, "shape", "upload")


class Nf2vecTasks(BaseModel):
    generate: bool
    classify: bool
    complete: bool


class Nf2vecPublic(BaseModel):
    model_config = ConfigDict(protected_namespaces=())  # "model_id" is the nf2vec model's, not pydantic's

    model_id: str
    family_id: str
    embedding_size: int
    decoder: Literal["latent", "implicit"] = Field(description="the decoder used when a request names none")
    decoders: list[Literal["latent", "implicit"]] = Field(description="the decoders the model folder can serve")
    tasks: Nf2vecTasks = Field(description="which operations the default decoder can serve")
    classes: list[str] = Field(
        description="classes generate can be asked for with the default decoder (empty: unconditional)"
    )


class SimilarShape(BaseModel):
    id: str
    name: str
    distance: float = Field(description="L2 distance between the codes (latent z, or nf2vec embeddings)")


class ClassProbability(BaseModel):
    class_name: str = Field(alias="class")
    probability: float
