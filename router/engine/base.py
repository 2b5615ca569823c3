"""The engine-client contract the router is written against (vLLM over HTTP in production, a fake in tests)."""

from __future__ import annotations

import abc
from dataclasses import dataclass


class EngineError(Exception):
    """The engine answered, but with an error. ``status`` is its HTTP status (0 when not HTTP)."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class EngineUnavailableError(EngineError):
    """The engine could not be reached (connection refused, timeout)."""


@dataclass(frozen=True)
class ModelInfo:
    """What a replica serves. ``root`` is the model directory vLLM loaded (used to find the tokenizer)."""

    name: str
    root: str
    max_model_len: int


@dataclass(frozen=True)
class GenerateCall:
    """One completion on a token-id prompt.

    ``top_n``: alternatives per generated token (0 = only the token's own logprob).
    ``cache_salt``: isolates prefix-cache entries (one salt per tenant).
    ``request_meta``: flat key/value pairs for vLLM's ``vllm_xargs`` (``SamplingParams.extra_args``), read
    by the prefix-cache eviction policy in the engine (``xedge_tenant``, ``xedge_category``, ...).
    """

    prompt_ids: tuple[int, ...]
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    top_n: int = 0
    cache_salt: str | None = None
    request_meta: tuple[tuple[str, str | int | float], ...] = ()


@dataclass(frozen=True)
class EngineToken:
    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class EngineUsage:
    """vLLM's own usage numbers for one call. ``cached_tokens`` are prompt tokens served by the prefix cache."""

    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int

    @property
    def computed_tokens(self) -> int:
        return self.prompt_tokens - self.cached_tokens


@dataclass(frozen=True)
class GenerateResult:
    tokens: tuple[EngineToken, ...]
    finish_reason: str
    usage: EngineUsage


class EngineClient(abc.ABC):
    """Contract of one engine replica.

    - ``model_info()`` describes the served model; it is called once per replica at startup.
    - ``generate(call)`` runs one completion on ``call.prompt_ids`` and returns the generated tokens with
      their logprobs and the engine's usage (prompt tokens, of which cached, completion tokens). A prompt
      whose prefix the engine has seen before must be served from its prefix cache: the router relies on
      it to send the whole committed prefix on every call.
    - Failures raise :class:`EngineUnavailableError` (not reachable) or :class:`EngineError` (answered
      with an error); nothing else escapes.
    - ``aclose()`` releases connections.
    """

    @abc.abstractmethod
    async def model_info(self) -> ModelInfo: ...

    @abc.abstractmethod
    async def generate(self, call: GenerateCall) -> GenerateResult: ...

    async def aclose(self) -> None:  # noqa: B027 - optional hook, default is nothing to release
        """Release resources (default: none)."""
