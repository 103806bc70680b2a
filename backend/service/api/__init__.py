"""The FastAPI application: :func:`create_app` wires the guard, error handlers and routers."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from backend import __version__
from backend.service.api import errors
from backend.service.api.guard import Guard
from backend.service.api.routes import health, jobs, nf2vec, render, shapes, uploads
from backend.service.config import API_VERSION, ServiceSettings
from backend.service.core import Service, open_service

BINARY_PATHS = ("/v1/uploads", "/v1/shapes/import")  # bodies up to max_upload_bytes; others max_json_bytes


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
    errors.install(app)
    for module in (health, uploads, jobs, shapes, render, nf2vec):
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
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app
