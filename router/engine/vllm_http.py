"""EngineClient for one vLLM OpenAI-compatible server, over httpx.

Uses ``POST /v1/completions`` with ``prompt`` as a list of token ids (so vLLM's prefix cache serves the
committed prefix), ``return_tokens_as_token_ids`` (ids, not strings, in the logprobs) and reads the
cached prompt tokens from ``usage.prompt_tokens_details.cached_tokens``: the server must run with
``--enable-prompt-tokens-details`` or every call fails with a message saying so.
"""

from __future__ import annotations

from typing import Any

import httpx

from router.engine.base import (
    EngineClient,
    EngineError,
    EngineToken,
    EngineUnavailableError,
    EngineUsage,
    GenerateCall,
    GenerateResult,
    ModelInfo,
)

_TOKEN_PREFIX = "token_id:"


def _parse_token(key: str) -> int:
    if not key.startswith(_TOKEN_PREFIX):
        raise EngineError(f"vLLM returned logprob key {key!r}, expected 'token_id:N' (return_tokens_as_token_ids)")
    return int(key[len(_TOKEN_PREFIX) :])


class VLLMHttpEngine(EngineClient):
    """One vLLM replica at ``base_url`` (e.g. ``http://127.0.0.1:8000``)."""

    def __init__(self, base_url: str, *, timeout_s: float, model: str | None = None, api_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self._client = httpx.AsyncClient(
            base_url=self.base_url, timeout=httpx.Timeout(timeout_s, connect=5.0), headers=headers
        )

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._client.post(path, json=body)
        except httpx.TimeoutException as exc:
            raise EngineUnavailableError(f"vLLM at {self.base_url} timed out on {path}: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise EngineUnavailableError(f"vLLM at {self.base_url} unreachable on {path}: {exc!r}") from exc
        if response.status_code != 200:
            raise EngineError(
                f"vLLM at {self.base_url} answered {response.status_code} on {path}: {response.text[:500]}",
                status=response.status_code,
            )
        return response.json()

    async def model_info(self) -> ModelInfo:
        try:
            response = await self._client.get("/v1/models")
        except httpx.TransportError as exc:
            raise EngineUnavailableError(f"vLLM at {self.base_url} unreachable: {exc!r}") from exc
        if response.status_code != 200:
            raise EngineError(f"vLLM at {self.base_url} /v1/models: {response.status_code}", status=response.status_code)
        models = response.json()["data"]
        chosen = models[0] if self._model is None else next((m for m in models if m["id"] == self._model), None)
        if chosen is None:
            raise EngineError(f"vLLM at {self.base_url} does not serve {self._model!r}; it serves {[m['id'] for m in models]}")
        self._model = chosen["id"]
        return ModelInfo(name=chosen["id"], root=chosen.get("root") or chosen["id"], max_model_len=int(chosen["max_model_len"]))

    async def generate(self, call: GenerateCall) -> GenerateResult:
        if self._model is None:
            await self.model_info()
        body: dict[str, Any] = {
            "model": self._model,
            "prompt": list(call.prompt_ids),
            "max_tokens": call.max_tokens,
            "temperature": call.temperature,
            "top_p": call.top_p,
            "logprobs": call.top_n,
            "return_tokens_as_token_ids": True,
            "return_token_ids": True,
        }
        if call.seed is not None:
            body["seed"] = call.seed
        if call.cache_salt is not None:
            body["cache_salt"] = call.cache_salt
        if call.request_meta:
            body["vllm_xargs"] = dict(call.request_meta)
        data = await self._post("/v1/completions", body)
        return self._parse(data, call)

    def _parse(self, data: dict[str, Any], call: GenerateCall) -> GenerateResult:
        choice = data["choices"][0]
        usage = data["usage"]
        details = usage.get("prompt_tokens_details")
        if details is None or details.get("cached_tokens") is None:
            raise EngineError(
                f"vLLM at {self.base_url} did not report usage.prompt_tokens_details.cached_tokens; "
                "start it with --enable-prompt-tokens-details"
            )
        logprobs = choice.get("logprobs") or {}
        token_ids = choice.get("token_ids") or [_parse_token(t) for t in logprobs.get("tokens", [])]
        token_lps = logprobs.get("token_logprobs") or [0.0] * len(token_ids)
        tops = logprobs.get("top_logprobs") or [None] * len(token_ids)
        tokens = []
        for tid, lp, top in zip(token_ids, token_lps, tops, strict=True):
            alts: tuple[tuple[int, float], ...] = ()
            if top and call.top_n > 0:
                ranked = sorted(((_parse_token(k), float(v)) for k, v in top.items()), key=lambda kv: -kv[1])
                alts = tuple(ranked[: call.top_n])
            tokens.append(EngineToken(token_id=int(tid), logprob=float(lp if lp is not None else 0.0), top=alts))
        return GenerateResult(
            tokens=tuple(tokens),
            finish_reason=str(choice.get("finish_reason") or "length"),
            usage=EngineUsage(
                prompt_tokens=int(usage["prompt_tokens"]),
                cached_tokens=int(details["cached_tokens"]),
                completion_tokens=int(usage.get("completion_tokens") or 0),
            ),
        )

    async def aclose(self) -> None:
        await self._client.aclose()
