"""Dependencies of the routes: the service object and content-type checks."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request

from backend.service.core import Service


def get_service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]
MAX_OFFSET = 2**31 - 1  # stated in the schema; SQLite cannot take offsets past 2^63 (a 500 before)
Limit = Annotated[int, Query(ge=1, le=1000, description="items per page")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="items skipped, newest first")]


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def require_json(request: Request) -> None:
    """JSON bodies must say so (a web page cannot send application/json without a CORS preflight)."""
    if _media_type(request) != "application/json":
        raise HTTPException(415, "the body must be JSON with 'Content-Type: application/json'")


def require_binary(request: Request) -> None:
    """Binary bodies must be sent as application/octet-stream."""
    if _media_type(request) != "application/octet-stream":
        raise HTTPException(415, "the body must be binary with 'Content-Type: application/octet-stream'")


JsonBody = Depends(require_json)
BinaryBody = Depends(require_binary)
