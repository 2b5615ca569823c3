"""``AsyncEdgeClient``: the asyncio client of the edge protocol (httpx), in the style of openai-python.

    client = AsyncEdgeClient("http://cloud:8000", timeout=httpx.Timeout(5.0, connect=1.0), max_retries=2)
    state = (await client.create_session(CreateSessionRequest(request_id=new_request_id(), ...))).state

The same endpoints, retries, idempotency keys and typed errors as ``EdgeClient`` (one implementation:
``_calls.Endpoints``, ``_base_client``); every endpoint method returns an awaitable.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from client_edge._base_client import (
    DEFAULT_TIMEOUT,
    BaseEdgeClient,
    Call,
    ClientOptions,
    Outcome,
    RequestOptions,
)
from client_edge._calls import Endpoints
from client_edge.retry import RetryPolicy


class AsyncEdgeClient(Endpoints, BaseEdgeClient):
    def __init__(
        self,
        base_url: str,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        retry: RetryPolicy | None = None,
        api_key: str | None = None,
        tenant: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        seed: int | None = None,
    ) -> None:
        retry = retry if retry is not None else RetryPolicy(max_retries=max_retries)
        self._owns_http = http_client is None
        http = http_client if http_client is not None else httpx.AsyncClient()
        super().__init__(ClientOptions(base_url, timeout, retry, api_key, tenant), http, seed)
        self._http: httpx.AsyncClient

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncEdgeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _request(self, call: Call[Any], options: RequestOptions) -> Any:
        steps = self._exchange(call, options)
        step = next(steps)
        while True:
            outcome: Outcome = None
            if not isinstance(step, float):  # a request
                try:
                    outcome = await self._http.send(step)
                    await outcome.aread()
                except httpx.RequestError as exc:  # DecodingError too, not only transport errors
                    outcome = exc
            else:
                await asyncio.sleep(step)
            try:
                step = steps.send(outcome)
            except StopIteration as done:
                return done.value
