"""Typed errors for the Trackstar client.

Error bodies follow Trackstar's `{"error": str, "origin": "trackstar"|"integration"}`
shape, with `detail` on 422 and `id` on 404 (API.md §7). Messages are safe to show to
staff: the client strips the API key and access tokens out of them before raising.
"""

from __future__ import annotations

from typing import Any


class TrackstarError(Exception):
    """Base class: anything that went wrong talking to Trackstar."""

    default_message = "Trackstar request failed"

    def __init__(
        self,
        message: str | None = None,
        *,
        status_code: int | None = None,
        origin: str | None = None,
        request_id: str | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.status_code = status_code
        self.origin = origin
        self.request_id = request_id
        self.method = method
        self.path = path
        super().__init__(self.message)

    def __str__(self) -> str:
        context = []
        if self.status_code is not None:
            context.append(f"HTTP {self.status_code}")
        if self.path:
            context.append(f"{self.method} {self.path}" if self.method else self.path)
        if self.origin:
            context.append(f"origin {self.origin}")
        if self.request_id:
            context.append(f"request id {self.request_id}")
        return f"{self.message} ({', '.join(context)})" if context else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class TrackstarAuthError(TrackstarError):
    """401: our API key or the access token is wrong (API.md §10: a key rotation mistake,
    or a connection deleted at Trackstar). Never by itself a sign that the customer's WMS
    credentials broke: Trackstar keeps serving its copy then, and reports it in errors[]."""

    default_message = "Trackstar refused the credentials"


class TrackstarForbidden(TrackstarError):
    """403: the endpoint is disabled for the org or connection, or the WMS credentials lack
    the permission for this resource (a non-blocking missing_permission, API.md §10)."""

    default_message = "Trackstar refused access to this endpoint"


class TrackstarNotFound(TrackstarError):
    default_message = "Trackstar has no such object"

    def __init__(self, message: str | None = None, *, object_id: str | None = None, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.object_id = object_id


class TrackstarValidationError(TrackstarError):
    """422: `detail` is `{<location>: {<field>: [messages]}}`."""

    default_message = "Trackstar rejected the request as invalid"

    def __init__(self, message: str | None = None, *, detail: Any = None, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.detail = detail


class TrackstarRateLimited(TrackstarError):
    """429: `retry_after` is how many seconds to wait before trying again."""

    default_message = "Trackstar rate limit reached"

    def __init__(self, message: str | None = None, *, retry_after: float = 1.0, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class TrackstarNotImplemented(TrackstarError):
    """501: the connection's integration does not offer this endpoint."""

    default_message = "The integration does not support this endpoint"


class TrackstarUnavailable(TrackstarError):
    """Timeouts, connection errors and 5xx: worth trying again later."""

    default_message = "Trackstar is unavailable"


class TrackstarBadRequest(TrackstarError):
    """Any other 4xx, e.g. 400 for an expired auth code or 409 for a running request."""

    default_message = "Trackstar rejected the request"


class TrackstarPaginationError(TrackstarError):
    """Pagination did not end: a repeated page token or too many pages."""

    default_message = "Trackstar pagination did not terminate"
