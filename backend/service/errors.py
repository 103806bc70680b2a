"""Errors of the service layer; the API maps each class to one HTTP status (see ``api/errors.py``).

Every message is one line a user can act on. Plain :class:`NeuralShapesError` (bad input) maps to 400.
"""

from __future__ import annotations

import re
import uuid

from backend.errors import NeuralShapesError

_ID = re.compile(r"[0-9a-f]{32}")


class NotFound(NeuralShapesError):
    """No shape / job / upload with that id (404)."""


class Conflict(NeuralShapesError):
    """The request does not fit the current state, e.g. cancelling a finished job (409)."""


class Busy(NeuralShapesError):
    """Too much queued work; try again later (429)."""


class TooLarge(NeuralShapesError):
    """A body or a derived size over the limits (413)."""


class Unprocessable(NeuralShapesError):
    """Well-formed input the operation cannot take, e.g. a shape of another model family (422)."""


class Unavailable(NeuralShapesError):
    """A feature this service cannot serve now, e.g. nf2vec without a trained model (503)."""


class QueueFull(Unavailable):
    """Every compute slot is busy and the waiting line is full (503); ``retry_after``: seconds to wait."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class DeadlineExceeded(Unavailable):
    """A mesh extraction or render ran into the server's deadline and was stopped (503)."""


class DiskFull(Unavailable):
    """No space left on the disk of the data folder (503): nothing was written, the service keeps running."""


class ClientGone(NeuralShapesError):
    """The client of a request disconnected, so its work was stopped (nobody receives the answer)."""


def new_id() -> str:
    """A random id: 32 lowercase hex characters (also a safe file name)."""
    return uuid.uuid4().hex


def check_id(value: str, what: str) -> str:
    """``value`` if it is a well-formed id, else a 400-class error (so no id can ever name a path)."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        shown = value if isinstance(value, str) and len(value) <= 64 and value.isprintable() else "<malformed>"
        raise NeuralShapesError(f"malformed {what} id '{shown}': ids are 32 lowercase hexadecimal characters")
    return value
