"""Every failure becomes a 4xx (or, for a bug, a 500) with ``{"detail": "<one line>"}``."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.errors import NeuralShapesError, validation_summary
from backend.service.api.guard import BodyTooLarge
from backend.service.api.schemas import ID_PATTERN
from backend.service.errors import Busy, Conflict, NotFound, QueueFull, TooLarge, Unavailable, Unprocessable

log = logging.getLogger(__name__)
PATH_ID = ID_PATTERN.strip("^$")  # every path parameter is an id
STATUS = (
    (NotFound, 404),
    (Conflict, 409),
    (Busy, 429),
    (TooLarge, 413),
    (Unprocessable, 422),
    (Unavailable, 503),
    (NeuralShapesError, 400),
)


def _detail(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def allowed_methods(request: Request) -> list[str]:
    """The methods the OpenAPI document lists for this path (Starlette's 405 names one route's only)."""
    methods: set[str] = set()
    for template, operations in request.app.openapi()["paths"].items():
        if re.fullmatch(re.sub(r"\\\{\w+\\\}", PATH_ID, re.escape(template)), request.scope["path"]):
            methods |= {method.upper() for method in operations}
    return sorted(methods)


def install(app: FastAPI) -> None:
    @app.exception_handler(NeuralShapesError)
    async def domain(_: Request, error: NeuralShapesError):
        status = next(code for cls, code in STATUS if isinstance(error, cls))
        response = _detail(status, str(error).splitlines()[0] if str(error) else type(error).__name__)
        if isinstance(error, QueueFull):
            response.headers["Retry-After"] = str(error.retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError):
        return _detail(422, validation_summary(error.errors()))  # body.settings.samples: Input should be ...

    @app.exception_handler(StarletteHTTPException)
    async def http(request: Request, error: StarletteHTTPException):
        headers = getattr(error, "headers", None)
        if error.status_code == 405:
            headers = {"Allow": ", ".join(allowed_methods(request))}
        return JSONResponse({"detail": str(error.detail)}, status_code=error.status_code, headers=headers)

    @app.exception_handler(BodyTooLarge)
    async def too_large(_: Request, error: BodyTooLarge):
        return _detail(413, str(error))

    @app.exception_handler(Exception)
    async def internal(request: Request, error: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        return _detail(500, f"internal error ({type(error).__name__}); the service keeps running, see its log")
