"""The first thing every request meets (a plain ASGI middleware, so it also covers /openapi.json and
unknown paths): exactly one Host header naming a loopback host (closes DNS rebinding), no request from a
browser page, the bearer token everywhere but /health, and body size limits (by Content-Length, and
counted while streaming).

A browser page is told apart by the headers browsers add and pages cannot remove: ``Origin`` (sent
on every cross-origin request and on every same-origin POST, ``null`` from sandboxed or file pages)
and ``Sec-Fetch-Site`` (sent by Chrome, Firefox and Safari on every request; only ``none``, a
request the user typed, is not from a page). No CORS headers are ever sent, so a web page cannot
read any answer either.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from backend.service.config import LOOPBACK_HOSTS
from backend.service.security import token_matches

PUBLIC_PATHS = ("/health",)
BAD_HOST = "the Host header must be one loopback name (127.0.0.1, localhost or [::1])"
FROM_BROWSER = (
    "cross-origin and other requests from web pages are refused (this service is for local programs, not web pages)"
)
BAD_TOKEN = "missing or wrong token: send 'Authorization: Bearer <token>' (the token is in <data-dir>/token)"
GUARD_MESSAGES = (BAD_HOST, FROM_BROWSER, BAD_TOKEN)


class BodyTooLarge(Exception):
    """Raised from ``receive`` when a streamed body passes its limit (mapped to 413)."""

    def __init__(self, limit: int):
        super().__init__(f"request body is larger than the limit of {limit:,} bytes")
        self.limit = limit


def host_is_loopback(host: str | None) -> bool:
    """``127.0.0.1``, ``localhost`` or ``[::1]`` (any case), with or without a port of ASCII digits."""
    if not host:
        return False
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        if rest and not (rest.startswith(":") and _digits(rest[1:])):
            return False
    else:
        name, _, port = host.partition(":")
        if port and not _digits(port):
            return False
    return name in LOOPBACK_HOSTS


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()  # str.isdigit alone takes "٣" and "²"


def from_browser(headers: dict[str, list[str]]) -> bool:
    """Whether a request comes from a web page: it has an ``Origin`` (any value, ``null`` included), or a
    ``Sec-Fetch-Site`` other than ``none`` (``cross-site``, ``same-site``, ``same-origin``)."""
    return "origin" in headers or any(site.strip().lower() != "none" for site in headers.get("sec-fetch-site", ()))


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
        headers: dict[str, list[str]] = {}
        for key, value in scope["headers"]:
            headers.setdefault(key.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        path = scope["path"]
        hosts = headers.get("host", [])
        if len(hosts) != 1 or not host_is_loopback(hosts[0]):  # two Host headers: a proxy may read either
            return await _reject(send, 400, BAD_HOST)
        if from_browser(headers):
            return await _reject(send, 403, FROM_BROWSER)
        authorizations = headers.get("authorization", [])
        if path not in PUBLIC_PATHS and not (
            len(authorizations) == 1 and token_matches(self.token(), authorizations[0])
        ):
            return await _reject(send, 401, BAD_TOKEN, bearer=True)
        limit = self.limit_for(path)
        lengths = headers.get("content-length", [])
        if lengths:
            length = lengths[0]
            if len(set(lengths)) != 1 or not _digits(length):
                return await _reject(send, 400, "malformed Content-Length header")
            if int(length) > limit:
                return await _reject(
                    send, 413, f"request body of {int(length):,} bytes is larger than the limit of {limit:,} bytes"
                )
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
