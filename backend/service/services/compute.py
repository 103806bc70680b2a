"""The compute queue: mesh extractions and renders (Warp kernels) of HTTP requests and of jobs.

At most ``slots`` run at once and at most ``max_waiting`` requests wait for one; a request beyond
that is refused at once (:class:`QueueFull`: 503 with Retry-After) rather than piling up. Requests
wait without holding a thread (an asyncio future) and run on a thread limiter of their own, so they
never take the thread pool that serves ``/health`` and job polling. Jobs take a slot with
``with queue:`` (blocking and never refused: the job workers bound them). Slots go to waiters first
come, first served.

A request stops when its client disconnects or its deadline (counted from its arrival) passes: at
once while it waits, and while it runs at the next check between kernel launches
(:func:`kernels.device.stoppable`; a Warp launch itself cannot be interrupted).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import anyio.to_thread

from backend.service.errors import ClientGone, DeadlineExceeded, QueueFull
from kernels.device import stoppable

T = TypeVar("T")
MAX_RETRY_AFTER = 60  # seconds


@dataclass
class Stop:
    """When a request's work must end: its client left, or the deadline (``time.monotonic()``) passed."""

    what: str  # "mesh extraction", "render": for the messages
    seconds: float
    deadline: float = field(init=False)
    client_left: bool = False

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.seconds

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def reason(self) -> ClientGone | DeadlineExceeded:
        if self.client_left:
            return ClientGone(f"{self.what} stopped: the client disconnected")
        return DeadlineExceeded(
            f"{self.what} stopped at the server's deadline of {self.seconds:g} s (waiting included); "
            "ask for less (lower resolution, fewer pixels, steps or objects) or try again when the service is less busy"
        )

    def check(self) -> None:
        """Raise the reason to stop, if there is one (called between kernel launches)."""
        if self.client_left or time.monotonic() > self.deadline:
            raise self.reason()


@dataclass(eq=False)  # identity: a waiter is removed from the line by identity, never by value
class _Waiter:
    wake: Callable[[], None]
    request: bool  # an HTTP request (counted against max_waiting), not a job
    granted: bool = False


class ComputeQueue:
    """``slots`` compute slots shared by requests (:meth:`run`) and jobs (``with queue:``)."""

    def __init__(self, slots: int, max_waiting: int, deadline_seconds: float):
        self.slots = slots
        self.max_waiting = max_waiting
        self.deadline_seconds = deadline_seconds
        self._lock = threading.Lock()
        self._free = slots
        self._line: deque[_Waiter] = deque()
        self._waiting_requests = 0
        self._seconds_per_run = 1.0  # running mean of request run times, for Retry-After
        self._limiter: anyio.CapacityLimiter | None = None  # made in the event loop (anyio wants one)

    # --- jobs ------------------------------------------------------------------------------------

    def __enter__(self) -> ComputeQueue:
        event = threading.Event()
        if not self._join(event.set, request=False).granted:
            event.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release()

    # --- requests --------------------------------------------------------------------------------

    async def run(self, work: Callable[[], T], *, what: str, disconnected: Callable[[], Awaitable[None]]) -> T:
        """``work()`` on a worker thread once a slot is free; raises :class:`QueueFull` at once when the
        line is full, :class:`DeadlineExceeded` after ``deadline_seconds``, :class:`ClientGone` soon after
        ``disconnected()`` returns (it should return when the client has closed the connection)."""
        stop = Stop(what, self.deadline_seconds)
        loop = asyncio.get_running_loop()
        granted = loop.create_future()
        waiter = self._join(lambda: loop.call_soon_threadsafe(_resolve, granted), request=True)
        gone = asyncio.ensure_future(disconnected())
        gone.add_done_callback(
            lambda _: setattr(stop, "client_left", True)
        )  # a running worker sees it at its next check
        try:
            if not waiter.granted:
                try:
                    await asyncio.wait((granted, gone), timeout=stop.remaining(), return_when=asyncio.FIRST_COMPLETED)
                except BaseException:  # this task was cancelled (the server stops)
                    self._leave(waiter)
                    raise
                if not granted.done():  # the client left or the deadline passed first
                    self._leave(waiter)
                    raise stop.reason()
            try:
                if self._limiter is None:
                    self._limiter = anyio.CapacityLimiter(self.slots)
                return await anyio.to_thread.run_sync(self._work, work, stop, limiter=self._limiter)
            finally:
                self._release()
        finally:
            gone.cancel()

    def _work(self, work: Callable[[], T], stop: Stop) -> T:
        started = time.monotonic()
        try:
            with stoppable(stop.check):
                stop.check()
                return work()
        finally:
            self._seconds_per_run = 0.8 * self._seconds_per_run + 0.2 * (time.monotonic() - started)

    # --- the line --------------------------------------------------------------------------------

    def _join(self, wake: Callable[[], None], *, request: bool) -> _Waiter:
        """A slot now (the waiter comes back granted) or a place in the line (``wake()`` on the grant)."""
        with self._lock:
            waiter = _Waiter(wake, request)
            if self._free and not self._line:
                self._free -= 1
                waiter.granted = True
                return waiter
            if request:
                if self._waiting_requests >= self.max_waiting:
                    raise QueueFull(
                        f"{self._waiting_requests} mesh / render requests are already waiting for "
                        f"{self.slots} compute slot{'s' if self.slots > 1 else ''}; try again later",
                        self._retry_after(),
                    )
                self._waiting_requests += 1
            self._line.append(waiter)
            return waiter

    def _release(self) -> None:
        """Hand the slot to the first in line, or free it."""
        with self._lock:
            if not self._line:
                self._free += 1
                return
            waiter = self._line.popleft()
            waiter.granted = True
            if waiter.request:
                self._waiting_requests -= 1
            waiter.wake()

    def _leave(self, waiter: _Waiter) -> None:
        """A waiting request gives up: out of the line, or, granted meanwhile, its slot passed on."""
        with self._lock:
            if not waiter.granted:
                self._line.remove(waiter)
                self._waiting_requests -= 1
                return
        self._release()

    def _retry_after(self) -> int:
        """Seconds until the line has likely moved on: the waiting requests' expected run time per slot."""
        expected = self._seconds_per_run * (self._waiting_requests + self.slots) / self.slots
        return max(1, min(MAX_RETRY_AFTER, math.ceil(expected)))


def _resolve(future: asyncio.Future) -> None:
    if not future.done():  # the waiter may have given up meanwhile
        future.set_result(None)
