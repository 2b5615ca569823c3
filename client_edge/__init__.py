"""xedge edge SDK. The client classes pull in httpx and pydantic only, on first use; the local runner, gates and
generation loop (``client_edge.session``) need the ``edge`` extra (numpy; torch for transformers).

The package itself imports nothing: ``client_edge.protocol`` (the contracts that cross a process) is imported
inside vLLM's engine and workers, which must not load the SDK's HTTP stack with it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from client_edge.protocol.registry import LazyRegistry

if TYPE_CHECKING:
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

_LAZY = LazyRegistry("attribute of client_edge", {
    "ClientOptions": "client_edge._base_client:ClientOptions",
    "RequestOptions": "client_edge._base_client:RequestOptions",
    "TrafficStats": "client_edge._base_client:TrafficStats",
    "new_request_id": "client_edge._base_client:new_request_id",
    "AsyncEdgeClient": "client_edge.async_client:AsyncEdgeClient",
    "EdgeClient": "client_edge.client:EdgeClient",
    "APIConnectionError": "client_edge.errors:APIConnectionError",
    "APIError": "client_edge.errors:APIError",
    "APIStatusError": "client_edge.errors:APIStatusError",
    "APITimeoutError": "client_edge.errors:APITimeoutError",
    "ConflictError": "client_edge.errors:ConflictError",
    "NotFoundError": "client_edge.errors:NotFoundError",
    "XEdgeError": "client_edge.errors:XEdgeError",
    "RetryPolicy": "client_edge.retry:RetryPolicy",
})  # fmt: skip

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


def __getattr__(name: str) -> Any:
    return _LAZY.module_attribute(__name__, name, __all__)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
