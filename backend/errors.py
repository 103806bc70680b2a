"""The one error type the product shows to users, and the one way work stops when it is cancelled."""

from __future__ import annotations

import threading


class NeuralShapesError(Exception):
    """A failure a user can act on; ``str(error)`` is one line naming the file or input and the cause."""


class Cancelled(NeuralShapesError):
    """Work stopped because its cancel event was set; ``str(error)`` says what stopped ("fit cancelled")."""


def check_cancel(cancel: threading.Event | None, message: str) -> None:
    """Raise :class:`Cancelled` with ``message`` once ``cancel`` is set; None is work that cannot be cancelled."""
    if cancel is not None and cancel.is_set():
        raise Cancelled(message)
