"""xedge edge SDK. Importing this package pulls in httpx and pydantic only; the local runner, gates and
generation loop (``client_edge.session``) need the ``edge`` extra (numpy; torch for transformers)."""

from client_edge._base_client import ClientOptions, RequestOptions, TrafficStats, new_request_id
from client_edge.async_client import AsyncEdgeClient
from client_edge.client import EdgeClient
from client_edge.errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    ConflictError,
    NotFoundError,
    XEdgeError,
)
from client_edge.retry import RetryPolicy

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncEdgeClient",
    "ClientOptions",
    "ConflictError",
    "EdgeClient",
    "NotFoundError",
    "RequestOptions",
    "RetryPolicy",
    "TrafficStats",
    "XEdgeError",
    "new_request_id",
]
