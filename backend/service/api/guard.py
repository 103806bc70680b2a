"""The first thing every request meets (a plain ASGI middleware, so it also covers /openapi.json and
unknown paths): loopback Host only (closes DNS rebinding), no cross-origin requests, the bearer token
everywhere but /health, and body size limits (by Content-Length, and counted while streaming).

No CORS headers are ever sent, so a web page cannot read any answer; with the Origin check and the
content-type checks of the routes a page cannot even make a state-changing request without a token.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from backend.service.config import LOOPBACK_HOSTS
from backend.service.security import token_matches

PUBLIC_PATHS = ("/health",)


class BodyTooLarge(Exception):
    """Raised from ``receive`` when a streamed body passes its limit (mapped to 413)."""

    def __init__(self, limit: int):
        super().__init__(f"request body is larger than the limit of {limit:,} bytes")
        self.limit = limit


def host_is_loopback(host: str | None) -> bool:
    """``127.0.0.1``, ``localhost`` or ``[::1]``, with or without a port."""
    if not host:
        return False
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return False
    else:
        name, _, port = host.partition(":")
        if port and not port.isdigit():
            return False
    return name in LOOPBACK_HOSTS


class Guard:
    """ASGI middleware; ``token()`` gives the expected token, ``limit_for(path)`` the body limit."""

    def __init__(self, app, *, token: Callable[[], str], limit_for: Callable[[str], int]):
        self.app = app
        self.token = token
        self.limit_for = limit_for

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self.app(scope, receive, send)
        if scope["type"] != "http":  # no websockets
            return
        headers = {}
        for key, value in scope["headers"]:
            headers.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
        path = scope["path"]
        if not host_is_loopback(headers.get("host")):
            return await _reject(send, 400, "the Host header must be a loopback name (127.0.0.1, localhost or [::1])")
        if "origin" in headers:
            return await _reject(send, 403, "cross-origin requests are refused (this service is for local programs, not web pages)")
        if path not in PUBLIC_PATHS and not token_matches(self.token(), headers.get("authorization")):
            return await _reject(send, 401, "missing or wrong token: send 'Authorization: Bearer <token>' (the token is in <data-dir>/token)", bearer=True)
        limit = self.limit_for(path)
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return await _reject(send, 400, "malformed Content-Length header")
            if int(length) > limit:
                return await _reject(send, 413, f"request body of {int(length):,} bytes is larger than the limit of {limit:,} bytes")
        received = 0

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        return await self.app(scope, counted_receive, send)


async def _reject(send, status: int, detail: str, bearer: bool = False) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if bearer:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
