"""The stateless re-prefill baseline (what CITER-style systems do): every escalation sends the whole
text so far to vLLM's completions API and reads the continuation back as text. Plugged into the edge's
generation loop as a ``Link`` in text mode, so both modes run the same loop and gates.

Usage numbers are vLLM's own (``prompt_tokens_details.cached_tokens`` needs
``--enable-prompt-tokens-details``, which the xedge stack sets); bytes are HTTP bodies, like the edge
client's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import httpx

from client_edge._base_client import RequestOptions, TrafficStats
from client_edge.errors import APIConnectionError, APIStatusError, APITimeoutError
from client_edge.protocol import CloudToken, SessionMode, VerifyResponse
from client_edge.result import CloudUsage


@dataclass
class StatelessAnswer:
    text: str
    finish_reason: str = "length"  # vLLM's: "stop" when it ended on EOS (whose text it leaves out)
    tokens: list[CloudToken] = field(default_factory=list)


class StatelessLink:
    """A ``Link`` with no cloud session: ``escalate`` re-sends everything, ``sync`` sends nothing."""

    def __init__(
        self, vllm_url: str, model: str, options: RequestOptions, transport: httpx.BaseTransport | None
    ) -> None:
        timeout = options.deadline_s if options.deadline_s is not None else 30.0
        self._http = httpx.Client(base_url=vllm_url, timeout=timeout, transport=transport)
        self.model = model
        self.session_id: str | None = "stateless"
        self.synced = 0
        self.resyncs = 0
        self.usage = CloudUsage()
        self._traffic = TrafficStats()

    @classmethod
    def factory(cls, vllm_url: str, model: str, transport: httpx.BaseTransport | None = None):  # noqa: ANN206
        def make(mode: SessionMode, fingerprint: str, options: RequestOptions) -> StatelessLink:
            if mode != "text":
                raise ValueError(
                    "the stateless baseline re-sends text: run it with SessionConfig(mode='text')"
                )
            return cls(vllm_url, model, options, transport)

        return make

    def traffic(self) -> TrafficStats:
        return self._traffic.snapshot()

    def close(self) -> None:
        """Nothing lives on the cloud; release this answer's HTTP connections."""
        self._http.close()

    def open(self, units: str, prefill: bool = True) -> None:  # type: ignore[override]
        self.synced = len(units)

    def sync(self, units: str, prefill: bool = True) -> None:  # type: ignore[override]
        self.synced = len(units)

    def verify(self, units: str, draft: str) -> VerifyResponse:  # type: ignore[override]
        raise NotImplementedError("the stateless baseline implements per-token escalation only")

    def escalate(self, units: str, k: int, proposal: str, top_n: int = 0) -> StatelessAnswer:  # type: ignore[override]
        body = json.dumps(
            {
                "model": self.model,
                "prompt": str(units),
                "max_tokens": k,
                "temperature": 0.0,
                "skip_special_tokens": False,
            }
        ).encode()
        try:
            resp = self._http.post(
                "/v1/completions", content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.TimeoutException as exc:
            raise APITimeoutError(str(exc)) from exc
        except httpx.TransportError as exc:
            raise APIConnectionError(str(exc)) from exc
        self._traffic.round_trips += 1
        self._traffic.bytes_sent += len(body)
        self._traffic.bytes_received += len(resp.content)
        if not resp.is_success:
            raise APIStatusError(
                f"vLLM answered {resp.status_code}: {resp.text[:200]}", response=resp, body=resp.text
            )
        data = resp.json()
        usage = data.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        prompt, cached = int(usage.get("prompt_tokens", 0)), int(details.get("cached_tokens") or 0)
        u = self.usage
        u.requests += 1
        u.engine_calls += 1
        u.prompt_tokens += prompt
        u.cached_tokens += cached
        u.computed_tokens += prompt - cached
        u.completion_tokens += int(usage.get("completion_tokens", 0))
        self.synced = len(units)
        choice = data["choices"][0]
        return StatelessAnswer(text=choice["text"], finish_reason=str(choice.get("finish_reason") or "length"))
