"""The OpenAPI document made to say what the server does: every status each operation can answer, with
the one error body the service sends (``ErrorPublic``, ``{"detail": "<one line>"}``), and the
constraints the server checks outside pydantic (ids, job states, binary bodies, the nf2vec model's decoders and classes).

It is applied to FastAPI's document in one place (:func:`complete_document`), so routes stay plain;
``tests/test_api_contract.py`` holds the service to it with schemathesis.
"""

from __future__ import annotations

import copy
from typing import Any

from backend.errors import NeuralShapesError
from backend.service.api.binary import MESH_MEDIA_TYPES
from backend.service.api.schemas import ID_PATTERN, ErrorPublic
from backend.service.services.uploads import MESH_FORMATS

ERROR = {"$ref": "#/components/schemas/ErrorPublic"}
DESCRIPTIONS = {
    400: "bad input: a Host header that is not one loopback name, a malformed Content-Length or id in a body, an "
    "invalid mesh, `.h5` file or scene",
    401: "missing or wrong token",
    403: "a browser's request (it carries `Origin` or `Sec-Fetch-Site` other than `none`)",
    404: "no shape, job or upload with a given id (an id in the path that is not 32 lowercase hex characters "
    "matches no route, also 404)",
    409: "the request does not fit the state (cancelling a job that already ended)",
    413: "a body over the size limit, or a request over a cost limit",
    415: "the body has the wrong `Content-Type`",
    422: "the request does not match the schema (`detail` names the fields); for nf2vec also a shape of another "
    "model family",
    429: "too many jobs queued or running; try again later",
    500: "a bug; it is logged and the service keeps running",
    503: "the service cannot serve this now (nf2vec without a model or network, or the compute queue is full); "
    "`Retry-After` says when to try again where it is known",
}
RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before trying again", "schema": {"type": "integer", "minimum": 0}}
}
BINARY_BODY = {"type": "string", "format": "binary"}

# Statuses that depend on the state of the service or on ids inside a body, per operation; the statuses
# every request can get (the guard's, 422, 415, 404 for path ids, 500) are derived in operation_statuses.
STATE_STATUSES: dict[tuple[str, str], tuple[int, ...]] = {
    ("post", "/v1/jobs/fit"): (404, 429),
    ("post", "/v1/jobs/{job_id}/cancel"): (409,),
    ("post", "/v1/render"): (404, 503),
    ("get", "/v1/shapes/{shape_id}/mesh"): (503,),
    ("get", "/v1/nf2vec"): (503,),
    ("post", "/v1/nf2vec/interpolate"): (404, 429, 503),
    ("post", "/v1/nf2vec/generate"): (429, 503),
    ("post", "/v1/nf2vec/complete"): (404, 429, 503),
    ("get", "/v1/shapes/{shape_id}/similar"): (503,),
    ("get", "/v1/shapes/{shape_id}/classify"): (503,),
}
PUBLIC = {("get", "/health")}


def operation_statuses(method: str, path: str, operation: dict[str, Any]) -> set[int]:
    """Every status ``operation`` can answer besides its success: the guard's (400 Host, 403 browser,
    401 token, 413 size; Content-Length is checked on every request), 500, 422 where FastAPI validates
    anything, 415 where a body is read, 404 for ids in the path, plus :data:`STATE_STATUSES`."""
    statuses = {400, 403, 413, 500, *STATE_STATUSES.get((method, path), ())}
    if (method, path) not in PUBLIC:
        statuses.add(401)
    if operation.get("parameters") or "requestBody" in operation:
        statuses.add(422)
    if "requestBody" in operation:
        statuses.add(415)
    if any(p["in"] == "path" and p["name"].endswith("_id") for p in operation.get("parameters", ())):
        statuses.add(404)
    return statuses


def complete_document(schema: dict[str, Any], binary_paths: tuple[str, ...]) -> dict[str, Any]:
    """FastAPI's ``schema`` completed in place (and returned): error responses, id patterns, binary bodies."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422 list shape: never sent here
        components.pop(name, None)
    components["ErrorPublic"] = ErrorPublic.model_json_schema()
    components["FitJobCreate"]["properties"]["uploads"]["items"]["pattern"] = ID_PATTERN
    components["ObjectSpec"]["properties"]["shape"]["pattern"] = ID_PATTERN
    for name in ("CameraSpec", "ObjectSpec"):  # rendering/scene.py checks 4 x 4 in a validator the schema cannot see
        _matrix4(components[name]["properties"]["matrix_world"])
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", ()):
                if parameter["in"] == "path" and parameter["name"].endswith("_id"):
                    parameter["schema"]["pattern"] = ID_PATTERN  # checked by the service (400), not pydantic
            if path in binary_paths:
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/octet-stream": {"schema": BINARY_BODY}},
                }
            responses = operation.setdefault("responses", {})
            for status in sorted(operation_statuses(method, path, operation)):
                answer: dict[str, Any] = {
                    "description": DESCRIPTIONS[status],
                    "content": {"application/json": {"schema": ERROR}},
                }
                if status == 401:
                    answer["headers"] = {
                        "WWW-Authenticate": {"description": "`Bearer`", "required": True, "schema": {"type": "string"}}
                    }
                if status == 503:
                    answer["headers"] = RETRY_AFTER
                responses[str(status)] = answer
    _parameter(schema, "post", "/v1/uploads", "format")["schema"]["enum"] = list(MESH_FORMATS)
    mesh_ok = schema["paths"]["/v1/shapes/{shape_id}/mesh"]["get"]["responses"]["200"]
    mesh_ok["content"] = {media: {} for media in MESH_MEDIA_TYPES}
    return schema


def with_model_choices(schema: dict[str, Any], info: dict | None) -> dict[str, Any]:
    """A copy of ``schema`` fitted to the current nf2vec model (``info``: ``Nf2vec.info()``): ``decoder`` is one
    of the decoders it serves, generate's ``class`` one of its default decoder's classes (when it can
    generate). ``None`` (no model yet) keeps the
    schema: the nf2vec requests answer 503 then."""
    if info is None:
        return schema
    schema = copy.deepcopy(schema)
    components = schema["components"]["schemas"]
    for name in ("InterpolateJobCreate", "GenerateJobCreate", "CompleteJobCreate"):
        components[name]["properties"]["decoder"]["anyOf"] = [{"enum": info["decoders"]}, {"type": "null"}]
    for operation in ("similar", "classify"):
        for parameter in schema["paths"][f"/v1/shapes/{{shape_id}}/{operation}"]["get"]["parameters"]:
            if parameter["name"] == "decoder":
                parameter["schema"]["anyOf"] = [{"enum": info["decoders"]}, {"type": "null"}]
    generate = components["GenerateJobCreate"]["properties"]
    if info["tasks"]["generate"]:
        allowed = [{"enum": info["classes"]}] if info["classes"] else []
        generate["class"]["anyOf"] = [*allowed, {"type": "null"}]
    return schema


def nf2vec_info(service) -> dict | None:
    """The service's nf2vec model (``Nf2vec.info()``), or None while it has none."""
    try:
        return service.nf2vec.info()
    except NeuralShapesError:
        return None


def _matrix4(field: dict[str, Any]) -> None:
    array = next(option for option in field["anyOf"] if option.get("type") == "array")
    array.update(minItems=4, maxItems=4)
    array["items"].update(minItems=4, maxItems=4)


def _parameter(schema: dict[str, Any], method: str, path: str, name: str) -> dict[str, Any]:
    return next(p for p in schema["paths"][path][method]["parameters"] if p["name"] == name)
