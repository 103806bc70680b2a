"""Background work for the operators: HTTP on worker threads, results applied on the main thread.

    workers.start("preview", work, done, title="Render Preview", pending="rendering ...")

``work()`` runs on a worker thread (HTTP, through :func:`client`, and plain Python only: a worker never
touches bpy); ``done(result)`` runs on the main thread from a ``bpy.app.timers``
tick and returns the line the panel shows (a string field of ``window_manager.neural_shapes``, ``line``).
Whatever goes wrong in either (the service unreachable, slow, dying mid-answer, an answer that is not
JSON, a bug) ends the task as failed with a one-line message, so an operator is never left "running".
A ``done`` that changes the scene ends with :func:`undo_step`: the operator's own undo step was taken
before the answer came. One task per slot at a time; the operators of a busy slot are greyed out
(``poll``). Operators return at once.

``blender -b`` scripts and the bpy module, where timers do not fire while a script blocks, call
:func:`finish` after pressing a button. :func:`stop` (unregister) breaks off the requests in flight,
ends the timer and joins the workers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import bpy

from ..client.client import Client, Interrupter
from ..client.connection import REQUEST_TIMEOUT, ConnectionSettings, make_client
from ..client.errors import Interrupted
from ..errors import LocalError, one_line
from ..properties import state

TICK_SECONDS = 0.1
WORKERS = 8  # about one per slot: a slow render must not hold up job polling or a connection check
THREAD_PREFIX = "neural-shapes"


@dataclass
class _Task:
    future: Future
    done: Callable[[Any], str]
    line: str
    failed: Callable[[str], str]
    progress: Callable[[], None] | None


_tasks: dict[str, _Task] = {}
_pool: ThreadPoolExecutor | None = None
_interrupter = Interrupter()
_stopping = threading.Event()


def begin() -> None:
    """Ready for work (register; again after :func:`stop`)."""
    global _pool, _interrupter
    _stopping.clear()
    _interrupter = Interrupter()
    _pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix=THREAD_PREFIX)


def busy(slot: str | None = None) -> bool:
    """Whether a task runs in ``slot`` (None: in any)."""
    return slot in _tasks if slot is not None else bool(_tasks)


def client(settings: ConnectionSettings, timeout: float = REQUEST_TIMEOUT) -> Client:
    """A client for a worker: found and checked there (that is HTTP too), interruptible by :func:`stop`."""
    return make_client(settings, timeout, _interrupter)


def interrupter() -> Interrupter:
    """What breaks off the workers' requests (for clients made without :func:`client`)."""
    return _interrupter


def pause(seconds: float) -> None:
    """Sleep on a worker between requests; :class:`Interrupted` when the add-on stops meanwhile."""
    if _stopping.wait(seconds):
        raise Interrupted(0, "the add-on was disabled")


def start(
    slot: str,
    work: Callable[[], Any],
    done: Callable[[Any], str],
    *,
    title: str,
    pending: str,
    line: str = "message",
    failed: Callable[[str], str] | None = None,
    progress: Callable[[], None] | None = None,
) -> None:
    """Run ``work()`` on a worker, then ``done(result)`` on the main thread (see the module docstring).

    ``pending``: the line while it runs; ``failed(message)``: the line after a failure (default
    ``"<title> failed: <message>"``); ``progress()``: called on the main thread at every tick while the
    work runs. :class:`LocalError` if ``slot`` is busy or the add-on is stopped.
    """
    if slot in _tasks:
        raise LocalError(f"{title} is still running")
    if _pool is None or _stopping.is_set():
        raise LocalError("the add-on is not running (enable it again)")
    _tasks[slot] = _Task(_pool.submit(work), done, line, failed or (lambda text: f"{title} failed: {text}"), progress)
    setattr(state(), line, pending)
    if not bpy.app.timers.is_registered(tick):
        # persistent: opening another file must not orphan a running task (its buttons would stay grey)
        bpy.app.timers.register(tick, first_interval=TICK_SECONDS, persistent=True)
    _redraw()


def tick() -> float | None:
    """One timer tick on the main thread: apply what the workers finished; None once nothing is left."""
    for slot, task in list(_tasks.items()):
        if not task.future.done():
            if task.progress is not None:
                _guard(task.progress, "progress display")
            continue
        del _tasks[slot]
        try:
            text = task.done(task.future.result())
        except Exception as error:  # noqa: BLE001 (any failure ends the task with its line, never a stuck button)
            text = task.failed(one_line(error))
            print(f"Neural Shapes: {text}")
        setattr(state(), task.line, text)
    _redraw()
    return TICK_SECONDS if _tasks else None


def finish(timeout: float = 600.0) -> None:
    """Tick until every task is over (scripts: ``blender -b`` and the bpy module); :class:`TimeoutError` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while tick() is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"tasks still running after {timeout:g} s: {', '.join(_tasks)}")
        time.sleep(TICK_SECONDS / 2)


def interrupt() -> None:
    """Break off every request in flight and make new ones fail at once; the timer ends, the tasks are dropped."""
    _stopping.set()
    _interrupter.interrupt()
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    _tasks.clear()


def stop() -> None:
    """:func:`interrupt`, then wait for the workers to end (unregister)."""
    global _pool
    interrupt()
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
        _pool = None


def _guard(call: Callable[[], None], what: str) -> None:
    try:
        call()
    except Exception as error:  # noqa: BLE001 (a progress line or an undo step must not end the tick)
        print(f"Neural Shapes: {what} failed ({one_line(error)})")


def undo_step(name: str) -> None:
    """Push an undo step for the scene change a ``done`` just made (main thread; none where Blender keeps no undo stack)."""
    _guard(partial(_push_undo, name), "undo step")


def _push_undo(name: str) -> None:
    if bpy.ops.ed.undo_push.poll():
        bpy.ops.ed.undo_push(message=name)


def _redraw() -> None:
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "STATUSBAR", "PREFERENCES"):
                area.tag_redraw()
