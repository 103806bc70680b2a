"""The HTTP side of the compute queue (:mod:`backend.service.services.compute`): mesh and render work
stops when its client leaves, which :func:`client_disconnected` tells."""

from __future__ import annotations

from fastapi import Request


async def client_disconnected(request: Request) -> None:
    """Return once the client has closed the connection. The body has been read by now, so the server's
    next message is the disconnect (uvicorn sends it when the socket closes)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
