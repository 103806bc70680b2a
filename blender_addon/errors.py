"""What the add-on refuses itself (:class:`LocalError`: nothing selected, no camera, a button still busy),
told apart from what the service refused or failed at (:class:`.client.errors.ServiceError`), and the
one line each becomes (bpy-free)."""

from __future__ import annotations

from .client.errors import ServiceError


class LocalError(Exception):
    """A request the add-on refuses before asking the service; ``str(error)`` is one line saying why."""


def one_line(error: BaseException) -> str:
    """One line for any exception: a local refusal as it is, the service's words as ``service: ...``,
    anything else (a bug) as its kind and text."""
    if isinstance(error, LocalError):
        return str(error)
    if isinstance(error, ServiceError):
        return f"service: {error.detail}"
    text = " ".join(str(error).split())[:300]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def report(operator, error: LocalError | ServiceError) -> set[str]:
    """Report ``error`` on ``operator`` as an ERROR line and cancel it (what ``execute`` returns)."""
    operator.report({"ERROR"}, one_line(error))
    return {"CANCELLED"}
