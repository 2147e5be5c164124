"""Trackstar API client: HTTP only, no Django."""

from .client import (
    DEFAULT_TIMEOUT,
    FILTER_OPERATORS,
    INTEGRATION_TYPES,
    RESOURCE_ACTIONS,
    RESOURCES,
    SYNC_FUNCTIONS,
    ExchangeResult,
    Page,
    TrackstarClient,
    encode_filters,
    parse_retry_after,
)
from .errors import (
    TrackstarAuthError,
    TrackstarBadRequest,
    TrackstarError,
    TrackstarNotFound,
    TrackstarNotImplemented,
    TrackstarPaginationError,
    TrackstarRateLimited,
    TrackstarUnavailable,
    TrackstarValidationError,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "FILTER_OPERATORS",
    "INTEGRATION_TYPES",
    "RESOURCES",
    "RESOURCE_ACTIONS",
    "SYNC_FUNCTIONS",
    "ExchangeResult",
    "Page",
    "TrackstarAuthError",
    "TrackstarBadRequest",
    "TrackstarClient",
    "TrackstarError",
    "TrackstarNotFound",
    "TrackstarNotImplemented",
    "TrackstarPaginationError",
    "TrackstarRateLimited",
    "TrackstarUnavailable",
    "TrackstarValidationError",
    "encode_filters",
    "parse_retry_after",
]
