"""``EdgeClient``: the synchronous client of the edge protocol (httpx), in the style of openai-python.

    client = EdgeClient("http://cloud:8000", timeout=httpx.Timeout(5.0, connect=1.0), max_retries=2)
    state = client.create_session(CreateSessionRequest(request_id=new_request_id(), ...)).state

Every call retries connection errors, timeouts, 408/429/5xx with exponential backoff and jitter, at most
``max_retries`` times, reusing the request's ``request_id`` so the router answers a retry from its
record. Failures raise the typed errors of ``client_edge.errors``. The endpoints and the retry loop are
shared with ``AsyncEdgeClient`` (``_calls.Endpoints``, ``_base_client``); this class only sends and sleeps.
"""

from __future__ import annotations

import time
from functools import cached_property
from typing import TYPE_CHECKING, Any

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
from client_edge.errors import XEdgeError
from client_edge.retry import RetryPolicy

if TYPE_CHECKING:  # the local model side needs the edge extra; importing client_edge must not
    from client_edge.chat import Chat
    from client_edge.gates.base import Gate
    from client_edge.runner.base import ModelRunner
    from client_edge.session import SessionConfig

#: The gate ``chat.completions`` uses when none is given (the one ``xedge demo`` uses).
DEFAULT_CHAT_GATE = ("entropy", 2.0)


class EdgeClient(Endpoints, BaseEdgeClient):
    def __init__(
        self,
        base_url: str,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        retry: RetryPolicy | None = None,
        api_key: str | None = None,
        tenant: str | None = None,
        http_client: httpx.Client | None = None,
        seed: int | None = None,
        runner: ModelRunner | None = None,
        gate: Gate | None = None,
        session: SessionConfig | None = None,
    ) -> None:
        """``runner`` / ``gate`` / ``session``: the local model, escalation gate and session settings that
        ``chat.completions.create`` answers with (the protocol endpoints need none of them)."""
        retry = retry if retry is not None else RetryPolicy(max_retries=max_retries)
        self._owns_http = http_client is None
        http = http_client if http_client is not None else httpx.Client()
        super().__init__(ClientOptions(base_url, timeout, retry, api_key, tenant), http, seed)
        self._http: httpx.Client
        self._runner, self._gate, self._session = runner, gate, session

    # --- the OpenAI-shaped interface (client_edge.chat) ------------------------------------------
    @cached_property
    def chat(self) -> Chat:
        """``client.chat.completions.create(model=..., messages=[...], ...)`` as in openai-python."""
        from client_edge.chat import Chat

        return Chat(self)

    def local_runner(self) -> ModelRunner:
        if self._runner is None:
            raise XEdgeError("chat.completions needs the local model: EdgeClient(base_url, runner=...)")
        return self._runner

    def gate_for_chat(self) -> Gate:
        if self._gate is None:
            from client_edge.gates import create_gate

            self._gate = create_gate(DEFAULT_CHAT_GATE[0], threshold=DEFAULT_CHAT_GATE[1])
        return self._gate

    @property
    def session_config(self) -> SessionConfig:
        if self._session is None:
            from client_edge.session import SessionConfig

            self._session = SessionConfig()
        return self._session

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> EdgeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, call: Call[Any], options: RequestOptions) -> Any:
        steps = self._exchange(call, options)
        step = next(steps)
        while True:
            outcome: Outcome = None
            if not isinstance(step, float):  # a request
                try:
                    outcome = self._http.send(step)
                    outcome.read()
                except httpx.RequestError as exc:  # DecodingError too, not only transport errors
                    outcome = exc
            else:
                time.sleep(step)
            try:
                step = steps.send(outcome)
            except StopIteration as done:
                return done.value
