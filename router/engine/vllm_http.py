"""EngineClient for one vLLM OpenAI-compatible server, over httpx.

Uses ``POST /v1/completions`` with ``prompt`` as a list of token ids (so vLLM's prefix cache serves the
committed prefix), ``return_tokens_as_token_ids`` (ids, not strings, in the logprobs) and reads the
cached prompt tokens from ``usage.prompt_tokens_details.cached_tokens``: the server must run with
``--enable-prompt-tokens-details`` or every call fails with a message saying so. A reply that is not a
completion of that shape (not JSON, keys missing, wrong types, no logprobs) is an :class:`EngineError`.
"""

from __future__ import annotations

import math
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
    return _count(int(key[len(_TOKEN_PREFIX) :]))


def _logprob(value: object) -> float:
    """A logprob from a reply: a finite number (vLLM itself sends -9999.0 for -inf)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"expected a finite logprob, got {value!r}")
    return float(value)


def _count(value: object) -> int:
    """A token id or count from a reply: a JSON integer >= 0 (not "5", 5.5 or true)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected an integer >= 0, got {value!r}")
    return value


class VLLMHttpEngine(EngineClient):
    """One vLLM replica at ``base_url`` (e.g. ``http://127.0.0.1:8000``)."""

    def __init__(self, base_url: str, *, timeout_s: float, model: str | None = None, api_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self._client = httpx.AsyncClient(
            base_url=self.base_url, timeout=httpx.Timeout(timeout_s, connect=5.0), headers=headers
        )

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        try:
            response = await self._client.post(path, json=body)
        except httpx.TimeoutException as exc:
            raise EngineUnavailableError(f"vLLM at {self.base_url} timed out on {path}: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise EngineUnavailableError(f"vLLM at {self.base_url} unreachable on {path}: {exc!r}") from exc
        except httpx.HTTPError as exc:  # it answered, but not in HTTP the client can read (e.g. a bad encoding)
            raise EngineError(f"vLLM at {self.base_url} sent an unreadable reply on {path}: {exc!r}") from exc
        if response.status_code != 200:
            raise EngineError(
                f"vLLM at {self.base_url} answered {response.status_code} on {path}: {response.text[:500]}",
                status=response.status_code,
            )
        return self._json(response, path)

    def _json(self, response: httpx.Response, path: str) -> Any:
        try:
            return response.json()
        except ValueError as exc:  # not JSON, or not UTF-8
            raise EngineError(
                f"vLLM at {self.base_url} sent a malformed reply on {path} (not JSON: {response.text[:200]!r})",
                status=response.status_code,
            ) from exc

    def _malformed(self, path: str, exc: Exception) -> EngineError:
        return EngineError(f"vLLM at {self.base_url} sent a malformed reply on {path}: {exc!r}", status=200)

    async def model_info(self) -> ModelInfo:
        try:
            response = await self._client.get("/v1/models")
        except httpx.TransportError as exc:
            raise EngineUnavailableError(f"vLLM at {self.base_url} unreachable: {exc!r}") from exc
        except httpx.HTTPError as exc:
            raise EngineError(f"vLLM at {self.base_url} sent an unreadable reply on /v1/models: {exc!r}") from exc
        if response.status_code != 200:
            raise EngineError(f"vLLM at {self.base_url} /v1/models: {response.status_code}", status=response.status_code)
        try:
            models = self._json(response, "/v1/models")["data"]
            chosen = models[0] if self._model is None else next((m for m in models if m["id"] == self._model), None)
            if chosen is None:
                raise EngineError(f"vLLM at {self.base_url} does not serve {self._model!r}; it serves {[m['id'] for m in models]}")
            info = ModelInfo(name=str(chosen["id"]), root=str(chosen.get("root") or chosen["id"]),
                             max_model_len=_count(chosen["max_model_len"]))  # fmt: skip
        except (LookupError, TypeError, ValueError, AttributeError) as exc:
            raise self._malformed("/v1/models", exc) from exc
        self._model = info.name
        return info

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
        try:
            return self._parse(data, call)
        except (LookupError, TypeError, ValueError, AttributeError) as exc:  # a 200 without a usable completion
            raise self._malformed("/v1/completions", exc) from exc

    def _parse(self, data: Any, call: GenerateCall) -> GenerateResult:
        """The completion in ``data``; a reply not shaped as vLLM's raises LookupError, TypeError, ValueError
        or AttributeError (``generate`` makes them an EngineError)."""
        choice = data["choices"][0]
        usage = data["usage"]
        details = usage.get("prompt_tokens_details")
        if details is None or details.get("cached_tokens") is None:
            raise EngineError(
                f"vLLM at {self.base_url} did not report usage.prompt_tokens_details.cached_tokens; "
                "start it with --enable-prompt-tokens-details"
            )
        logprobs = choice["logprobs"]
        if not isinstance(logprobs, dict):  # always asked for (logprobs=top_n): the tokens' logprobs are the answer
            raise ValueError(f"choices[0].logprobs is {logprobs!r}")
        token_ids = [_count(t) for t in choice.get("token_ids") or [_parse_token(t) for t in logprobs["tokens"]]]
        if len(token_ids) > call.max_tokens:
            raise ValueError(f"{len(token_ids)} tokens for max_tokens={call.max_tokens}")
        token_lps = logprobs["token_logprobs"]
        tops = logprobs.get("top_logprobs") if call.top_n > 0 else None
        tokens = []
        for tid, lp, top in zip(token_ids, token_lps, tops or [None] * len(token_ids), strict=True):
            alts: tuple[tuple[int, float], ...] = ()
            if top:
                ranked = sorted(((_parse_token(k), _logprob(v)) for k, v in top.items()), key=lambda kv: -kv[1])
                alts = tuple(ranked[: call.top_n])
            tokens.append(EngineToken(token_id=tid, logprob=_logprob(lp if lp is not None else 0.0), top=alts))
        return GenerateResult(
            tokens=tuple(tokens),
            finish_reason=str(choice.get("finish_reason") or "length"),
            usage=EngineUsage(
                prompt_tokens=_count(usage["prompt_tokens"]),
                cached_tokens=_count(details["cached_tokens"]),
                completion_tokens=_count(usage.get("completion_tokens") or 0),
            ),
        )

    async def aclose(self) -> None:
        await self._client.aclose()
