"""The HTTP side of the compute queue (:mod:`backend.service.services.compute`): mesh and render routes run their
work through :func:`run_compute`, which watches for the client leaving and answers a full queue with
503 and a Retry-After header."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import HTTPException, Request

from backend.service.errors import QueueFull
from backend.service.services.compute import ComputeQueue

T = TypeVar("T")


async def run_compute(request: Request, queue: ComputeQueue, work: Callable[[], T], *, what: str) -> T:
    """``work()`` through the compute queue, stopped if the client of ``request`` disconnects."""
    try:
        return await queue.run(work, what=what, disconnected=lambda: _disconnected(request))
    except QueueFull as error:
        raise HTTPException(503, str(error), headers={"Retry-After": str(error.retry_after)}) from None


async def _disconnected(request: Request) -> None:
    """Return once the client has closed the connection. The body has been read by now, so the server's
    next message is the disconnect (uvicorn sends it when the socket closes)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
