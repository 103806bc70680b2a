"""The one error type the product shows to users, the one way work stops when it is cancelled, and
pydantic's errors as one line."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping


class NeuralShapesError(Exception):
    """A failure a user can act on; ``str(error)`` is one line naming the file or input and the cause."""


class Cancelled(NeuralShapesError):
    """Work stopped because its cancel event was set; ``str(error)`` says what stopped ("fit cancelled")."""


def check_cancel(cancel: threading.Event | None, message: str) -> None:
    """Raise :class:`Cancelled` with ``message`` once ``cancel`` is set; None is work that cannot be cancelled."""
    if cancel is not None and cancel.is_set():
        raise Cancelled(message)


def validation_summary(errors: Iterable[Mapping]) -> str:
    """Pydantic's errors (``ValidationError.errors()``) as one line: ``objects.0.operation: Input should be ...; ...``."""
    parts = []
    for item in list(errors)[:5]:
        where = ".".join(str(p) for p in item.get("loc", ()))
        parts.append(f"{where}: {item.get('msg', 'invalid')}" if where else str(item.get("msg", "invalid")))
    return "; ".join(parts) or "invalid input"
