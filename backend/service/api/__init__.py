"""The FastAPI application: :func:`create_app` wires the guard, error handlers and routers."""

from __future__ import annotations

import re
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.convertors import Convertor, register_url_convertor

from backend import __version__
from backend.service.api import contract, error_handlers
from backend.service.api.guard import Guard
from backend.service.api.routes import health, jobs, nf2vec, render, shapes, uploads
from backend.service.api.schemas import ID_PATTERN
from backend.service.config import API_VERSION, ServiceSettings
from backend.service.core import Service, open_service

BINARY_PATHS = ("/v1/uploads", "/v1/shapes/import")  # bodies up to max_upload_bytes; others max_json_bytes
PATH_ID = re.compile(r"\{(\w+_id)\}")


class IdConvertor(Convertor):
    """Path ids as the router matches them: 32 lowercase hex characters (``schemas.ID_PATTERN``)."""

    regex = ID_PATTERN.strip("^$")

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("id", IdConvertor())


def match_ids_only(router: APIRouter) -> None:
    """Make every ``{..._id}`` path parameter of ``router`` (before it is included) match ids only, so
    ``GET /v1/jobs/fit`` is the fit route's path (405, ``Allow: POST``) rather than a malformed job id,
    and ``/v1/shapes/..%2Ftoken`` matches no route (404), as the published pattern says."""
    for route in router.routes:
        if isinstance(route, APIRoute):
            route.path = PATH_ID.sub(r"{\1:id}", route.path)  # compiled when the router is included


def create_app(settings: ServiceSettings, *, service: Service | None = None) -> FastAPI:
    """The app for ``settings``. Pass an already opened ``service`` (the server does, so it is ready
    before the port is announced); otherwise it is opened at startup and closed at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        owned = service is None
        app.state.service = service or open_service(settings)
        try:
            yield
        finally:
            if owned:
                app.state.service.close()

    app = FastAPI(
        title="neural-shapes",
        version=__version__,
        summary=f"Local service of neural-shapes, API version {API_VERSION}",
        lifespan=lifespan,
        docs_url=None,  # the interactive pages load scripts from the web and cannot send the token
        redoc_url=None,
    )
    if service is not None:
        app.state.service = service
    error_handlers.install(app)
    for module in (health, uploads, jobs, shapes, render, nf2vec):
        match_ids_only(module.router)
        app.include_router(module.router)

    def limit_for(path: str) -> int:
        return settings.max_upload_bytes if path in BINARY_PATHS else settings.max_json_bytes

    app.add_middleware(Guard, token=lambda: app.state.service.token, limit_for=limit_for)

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            schema["info"]["x-api-version"] = API_VERSION
            schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            schema["security"] = [{"bearer": []}]
            schema["paths"]["/health"]["get"]["security"] = []
            app.openapi_schema = contract.complete_document(schema, BINARY_PATHS)
        # the nf2vec decoders and classes are the current model's, which may appear or change while the service runs
        return contract.with_model_choices(app.openapi_schema, contract.nf2vec_info(app.state.service))

    app.openapi = openapi
    return app
