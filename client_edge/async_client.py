"""``AsyncEdgeClient``: the asyncio client of the edge protocol (httpx), in the style of openai-python.

    client = AsyncEdgeClient("http://cloud:8000", timeout=httpx.Timeout(5.0, connect=1.0), max_retries=2)
    state = (await client.create_session(CreateSessionRequest(request_id=new_request_id(), ...))).state

Every call retries connection errors, timeouts, 408/429/5xx with exponential backoff and jitter, at most
``max_retries`` times, reusing the request's ``request_id`` so the router answers a retry from its
record. Failures raise the typed errors of ``client_edge.errors``.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from client_edge import _calls, errors
from client_edge._base_client import (
    DEFAULT_TIMEOUT,
    BaseEdgeClient,
    Call,
    ClientOptions,
    RequestOptions,
    ResponseT,
    attempt_timeout,
)
from client_edge.protocol import (
    CloudInfo,
    CreateSessionRequest,
    EscalateRequest,
    EscalateResponse,
    SessionResponse,
    SyncRequest,
    TruncateRequest,
    VerifyRequest,
    VerifyResponse,
)
from client_edge.retry import RetryPolicy

_NO_OPTIONS = RequestOptions()


class AsyncEdgeClient(BaseEdgeClient):
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
        super().__init__(ClientOptions(base_url, timeout, retry, api_key, tenant), seed)
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient()

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncEdgeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- endpoints -------------------------------------------------------------------------------
    async def info(self, options: RequestOptions = _NO_OPTIONS) -> CloudInfo:
        return await self._request(_calls.info(), options)  # type: ignore[return-value]

    async def create_session(
        self, body: CreateSessionRequest, options: RequestOptions = _NO_OPTIONS
    ) -> SessionResponse:
        return await self._request(_calls.create_session(body), options)  # type: ignore[return-value]

    async def get_session(
        self, session_id: str, include_content: bool = False, options: RequestOptions = _NO_OPTIONS
    ) -> SessionResponse:
        return await self._request(_calls.get_session(session_id, include_content), options)  # type: ignore[return-value]

    async def delete_session(self, session_id: str, options: RequestOptions = _NO_OPTIONS) -> None:
        await self._request(_calls.delete_session(session_id), options)

    async def escalate(
        self, session_id: str, body: EscalateRequest, options: RequestOptions = _NO_OPTIONS
    ) -> EscalateResponse:
        return await self._request(_calls.escalate(session_id, body), options)  # type: ignore[return-value]

    async def verify(
        self, session_id: str, body: VerifyRequest, options: RequestOptions = _NO_OPTIONS
    ) -> VerifyResponse:
        return await self._request(_calls.verify(session_id, body), options)  # type: ignore[return-value]

    async def sync(
        self, session_id: str, body: SyncRequest, options: RequestOptions = _NO_OPTIONS
    ) -> SessionResponse:
        return await self._request(_calls.sync(session_id, body), options)  # type: ignore[return-value]

    async def truncate(
        self, session_id: str, body: TruncateRequest, options: RequestOptions = _NO_OPTIONS
    ) -> SessionResponse:
        return await self._request(_calls.truncate(session_id, body), options)  # type: ignore[return-value]

    # --- the send loop ---------------------------------------------------------------------------
    async def _request(self, call: Call[ResponseT], options: RequestOptions) -> ResponseT | None:
        timeout, policy = options.resolve(self.options)
        deadline = None if options.deadline_s is None else time.monotonic() + options.deadline_s
        attempt = 0
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            request = self._build(self._http, call, attempt_timeout(timeout, remaining))
            if remaining is not None and remaining <= 0:
                raise errors.APITimeoutError(f"deadline of {options.deadline_s}s passed", request=request)
            response: httpx.Response | None = None
            failure: errors.APIError
            try:
                response = await self._http.send(request)
                await response.aread()
            except httpx.TransportError as exc:
                self._account(request, None, attempt)
                failure = self._transport_error(exc, request)
                response = None
            else:
                self._account(request, response, attempt)
                if response.is_success:
                    return self._parse(call, response)
                failure = errors.status_error_from_response(response)
            delay = self._retry_delay(policy, attempt, response)
            if delay is None or (deadline is not None and time.monotonic() + delay >= deadline):
                raise failure
            await asyncio.sleep(delay)
            attempt += 1
