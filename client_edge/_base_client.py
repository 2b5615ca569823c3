"""The one implementation behind ``EdgeClient`` and ``AsyncEdgeClient`` (the openai-python split).

Everything that decides anything lives here once: request building, the retry/deadline loop, response
parsing, accounting, and the endpoints (``_calls.Endpoints``). The loop is written as a generator
(``BaseEdgeClient._exchange``) that yields what to do next, an ``httpx.Request`` to send or a delay in
seconds to wait, and receives the outcome; the two clients are thin transports that drive it, one with
``send``/``time.sleep``, the other with ``await send``/``asyncio.sleep``.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar, Union

import httpx
from pydantic import BaseModel, ValidationError

from client_edge import errors
from client_edge.protocol import PROTOCOL_VERSION, TENANT_HEADER
from client_edge.retry import RetryPolicy, is_retryable_status, retry_after_s

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=2.0)
IDEMPOTENCY_HEADER = "Idempotency-Key"

ResponseT = TypeVar("ResponseT", bound=BaseModel)


def new_request_id() -> str:
    """A fresh idempotency key; reuse it only to retry the very same request."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class ClientOptions:
    """Everything a client call depends on besides its body. ``timeout`` is per HTTP attempt."""

    base_url: str
    timeout: httpx.Timeout = field(default_factory=lambda: DEFAULT_TIMEOUT)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    api_key: str | None = None
    tenant: str | None = None

    def headers(self) -> dict[str, str]:
        h = {"Accept": "application/json", "X-Xedge-Client-Protocol": str(PROTOCOL_VERSION)}
        if self.api_key is not None:
            h["Authorization"] = f"Bearer {self.api_key}"
        if self.tenant is not None:
            h[TENANT_HEADER] = self.tenant
        return h


@dataclass
class TrafficStats:
    """Running totals over every HTTP attempt a client made (retries included). Bytes are HTTP bodies."""

    round_trips: int = 0
    retries: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0

    def snapshot(self) -> TrafficStats:
        return replace(self)

    def since(self, earlier: TrafficStats) -> TrafficStats:
        return TrafficStats(
            self.round_trips - earlier.round_trips,
            self.retries - earlier.retries,
            self.bytes_sent - earlier.bytes_sent,
            self.bytes_received - earlier.bytes_received,
        )


@dataclass(frozen=True)
class Call(Generic[ResponseT]):
    """One endpoint call: method, path, JSON body, the response model, and whether to retry it."""

    method: str
    path: str
    body: BaseModel | None
    response_model: type[ResponseT] | None
    request_id: str | None = None
    params: dict[str, str] | None = None


#: What the driver must do next: send this request, or wait this many seconds (a float).
Step = Union[httpx.Request, float]  # noqa: UP007 - a runtime alias, kept importable on 3.10
#: What the driver reports back: the (read) response, the request error (transport failure, or a body
#: that could not be decoded: a bad Content-Encoding), or None after a wait.
Outcome = Union[httpx.Response, httpx.RequestError, None]  # noqa: UP007


class BaseEdgeClient:
    def __init__(self, options: ClientOptions, http: httpx.Client | httpx.AsyncClient, seed: int | None) -> None:
        self.options = options
        self.stats = TrafficStats()
        self._http = http
        self._rng = random.Random(seed)

    def _exchange(
        self, call: Call[ResponseT], options: RequestOptions
    ) -> Generator[Step, Outcome, ResponseT | None]:
        """One call, retries and deadline included, as a generator of steps (see the module docstring)."""
        timeout, policy = options.resolve(self.options)
        deadline = None if options.deadline_s is None else time.monotonic() + options.deadline_s
        attempt = 0
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            request = self._build(self._http, call, attempt_timeout(timeout, remaining))
            if remaining is not None and remaining <= 0:
                raise errors.APITimeoutError(f"deadline of {options.deadline_s}s passed", request=request)
            outcome = yield request
            response: httpx.Response | None = None
            failure: errors.APIError
            if isinstance(outcome, httpx.RequestError):
                self._account(request, None, attempt)
                failure = self._transport_error(outcome, request)
            else:  # a response (duck-typed: an http_client may be an httpx-compatible test client)
                assert outcome is not None, "the driver must report an outcome for each request"
                response = outcome
                self._account(request, response, attempt)
                if response.is_success:
                    return self._parse(call, response)
                failure = errors.status_error_from_response(response)
            delay = self._retry_delay(policy, attempt, response)
            if delay is None or (deadline is not None and time.monotonic() + delay >= deadline):
                raise failure
            yield float(delay)
            attempt += 1

    def _build(
        self, http: httpx.Client | httpx.AsyncClient, call: Call[ResponseT], timeout: httpx.Timeout
    ) -> httpx.Request:
        headers = self.options.headers()
        if call.request_id is not None:
            headers[IDEMPOTENCY_HEADER] = call.request_id
        content = None
        if call.body is not None:
            content = call.body.model_dump_json().encode()
            headers["Content-Type"] = "application/json"
        return http.build_request(
            call.method,
            self.options.base_url.rstrip("/") + call.path,
            content=content,
            headers=headers,
            params=call.params,
            timeout=timeout,
        )

    def _account(self, request: httpx.Request, response: httpx.Response | None, attempt: int) -> None:
        self.stats.round_trips += 1
        self.stats.retries += attempt > 0
        self.stats.bytes_sent += len(request.content)
        if response is not None:
            self.stats.bytes_received += len(response.content)

    def _parse(self, call: Call[ResponseT], response: httpx.Response) -> ResponseT | None:
        if call.response_model is None:
            return None
        try:
            return call.response_model.model_validate_json(response.content)
        except ValidationError as exc:
            raise errors.APIResponseValidationError(
                f"{call.method} {call.path}: answer does not match {call.response_model.__name__}: {exc}",
                response=response,
            ) from exc

    def _retry_delay(
        self, policy: RetryPolicy, attempt: int, response: httpx.Response | None
    ) -> float | None:
        """Seconds to wait before the next attempt, or None when this failure must be raised."""
        if attempt >= policy.max_retries:
            return None
        if response is not None and not is_retryable_status(response.status_code):
            return None
        after = retry_after_s(response) if response is not None else None
        return policy.delay_s(attempt, self._rng, after)

    @staticmethod
    def _transport_error(exc: httpx.RequestError, request: httpx.Request) -> errors.APIConnectionError:
        if isinstance(exc, httpx.TimeoutException):
            return errors.APITimeoutError(f"timed out: {type(exc).__name__}: {exc}", request=request)
        return errors.APIConnectionError(f"connection error: {type(exc).__name__}: {exc}", request=request)


@dataclass(frozen=True)
class RequestOptions:
    """Per-call overrides. ``deadline_s`` bounds the whole call, retries and backoff included: the edge
    uses it so that a slow cloud costs at most that long before it keeps its own token."""

    timeout: float | httpx.Timeout | None = None
    max_retries: int | None = None
    deadline_s: float | None = None

    def __post_init__(self) -> None:
        if self.deadline_s is not None and not self.deadline_s > 0:  # NaN too: it would never expire
            raise ValueError(f"deadline_s must be > 0, got {self.deadline_s}")
        if self.max_retries is not None and self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")

    def resolve(self, client: ClientOptions) -> tuple[httpx.Timeout, RetryPolicy]:
        timeout = client.timeout
        if isinstance(self.timeout, httpx.Timeout):
            timeout = self.timeout
        elif self.timeout is not None:
            timeout = httpx.Timeout(self.timeout)
        policy = (
            client.retry if self.max_retries is None else replace(client.retry, max_retries=self.max_retries)
        )
        return timeout, policy


def attempt_timeout(timeout: httpx.Timeout, remaining_s: float | None) -> httpx.Timeout:
    """Cap every phase of an attempt's timeout by the time left before the call's deadline."""
    if remaining_s is None:
        return timeout

    def cap(v: float | None) -> float:
        return remaining_s if v is None else min(v, remaining_s)

    return httpx.Timeout(
        connect=cap(timeout.connect), read=cap(timeout.read), write=cap(timeout.write), pool=cap(timeout.pool)
    )
