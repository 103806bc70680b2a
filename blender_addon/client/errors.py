"""What can go wrong talking to the service, one class per cause, so a caller can say the right thing:
nothing answers (:class:`ServiceUnreachable`), it is slow (:class:`ServiceTimeout`: not the same as
gone), it answered something the API does not promise (:class:`BadResponse`), or it refused the request
(plain :class:`ServiceError` with the HTTP status)."""

from __future__ import annotations


class ServiceError(Exception):
    """A request failed: ``status`` is the HTTP status (0: no HTTP answer), ``detail`` one line saying why."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"{status}: {detail}" if status else detail)
        self.status = status
        self.detail = detail


class VersionMismatch(ServiceError):
    """The service speaks another API version than this client."""


class ServiceUnreachable(ServiceError):
    """No service answers there: connection refused, no such host, no (or a stale) ``service.json``."""


class ServiceTimeout(ServiceError):
    """The service took the request but did not answer in time: it may still be working on it."""


class BadResponse(ServiceError):
    """An answer the API does not promise: cut short, not JSON, fields missing, a redirect, the connection
    dropped mid-answer, or something at the URL that is not the neural-shapes service."""


class Interrupted(ServiceError):
    """The request was broken off on purpose (:meth:`Interrupter.interrupt`)."""
