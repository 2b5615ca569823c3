"""Which chat-completions fields the edge client implements, and what each becomes (validated once).

Supported: ``model`` (must name the local model), ``messages`` (system / user / assistant, text
content), ``stream``, ``stream_options.include_usage``, ``max_tokens`` / ``max_completion_tokens``,
``temperature`` / ``top_p`` / ``seed``, ``user`` (an opaque label, as for OpenAI). Anything else that is
set (``tools``, ``n > 1``, ``stop``, ``logprobs``, penalties, ``response_format``, ...) raises
``UnsupportedParameterError`` naming it: never silently ignored.

Sampling: the edge drafts greedily. ``temperature`` > 0 is honoured exactly with the speculative
strategy, where every token is verified by the cloud with the speculative-sampling rule (the answer
follows the cloud's sampling distribution); with the escalate strategy local tokens would stay greedy,
so it is refused.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from client_edge.errors import UnsupportedParameterError
from client_edge.protocol import SamplingSettings

ROLES = frozenset({"system", "user", "assistant", "developer"})
#: Fields accepted without effect on generation (OpenAI treats them as labels too).
LABELS = frozenset({"user", "metadata", "store", "extra_headers", "extra_query", "timeout"})


@dataclass(frozen=True)
class ChatRequest:
    messages: list[dict[str, str]]
    max_tokens: int | None
    sampling: SamplingSettings
    stream: bool
    include_usage: bool


def _text(content: Any, i: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Iterable) and not isinstance(content, Mapping):
        parts = []
        for part in content:
            if not (isinstance(part, Mapping) and part.get("type") == "text"):
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise UnsupportedParameterError(f"messages[{i}].content: only text parts are supported, got {kind!r}")
            parts.append(str(part["text"]))
        return "".join(parts)
    raise UnsupportedParameterError(f"messages[{i}].content must be a string or a list of text parts")


def _messages(messages: Any) -> list[dict[str, str]]:
    if not isinstance(messages, Iterable) or isinstance(messages, str | bytes | Mapping):
        raise UnsupportedParameterError("messages must be a list of {'role', 'content'} objects")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise UnsupportedParameterError(f"messages[{i}] must be an object with 'role' and 'content'")
        role = m.get("role")
        if role not in ROLES:
            raise UnsupportedParameterError(
                f"messages[{i}].role {role!r} is not supported (tool and function messages need tools, which the "
                f"edge client does not implement); use one of {sorted(ROLES)}"
            )
        extra = sorted(k for k, v in m.items() if k not in ("role", "content", "name") and v is not None)
        if extra:
            raise UnsupportedParameterError(f"messages[{i}] has unsupported fields {extra}")
        out.append({"role": "system" if role == "developer" else str(role), "content": _text(m.get("content"), i)})
    if not out:
        raise UnsupportedParameterError("messages must not be empty")
    return out


def parse_request(
    *,
    served_model: str,
    speculative: bool,
    model: str,
    messages: Any,
    stream: bool | None,
    stream_options: Mapping[str, Any] | None,
    max_tokens: int | None,
    max_completion_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    seed: int | None,
    n: int | None,
    unsupported: Mapping[str, Any],
) -> ChatRequest:
    if model != served_model:
        raise UnsupportedParameterError(f"model {model!r} is not served here: this edge client runs {served_model!r}")
    bad = sorted(k for k, v in unsupported.items() if v is not None and k not in LABELS)
    if bad:
        raise UnsupportedParameterError(
            f"unsupported chat-completions fields {bad}: the edge client implements model, messages, stream, "
            "stream_options, max_tokens / max_completion_tokens, temperature, top_p, seed, n=1"
        )
    if n not in (None, 1):
        raise UnsupportedParameterError(f"n={n}: the edge client generates one choice per request (n=1)")
    if max_tokens is not None and max_completion_tokens is not None and max_tokens != max_completion_tokens:
        raise UnsupportedParameterError("max_tokens and max_completion_tokens disagree: give one")
    limit = max_completion_tokens if max_completion_tokens is not None else max_tokens
    if limit is not None and (not isinstance(limit, numbers.Integral) or isinstance(limit, bool)):
        raise UnsupportedParameterError(f"max_tokens must be an integer, got {type(limit).__name__} {limit!r}")
    if limit is not None and limit < 1:
        raise UnsupportedParameterError(f"max_tokens must be >= 1, got {limit}")
    if stream_options is not None:
        extra = sorted(set(stream_options) - {"include_usage"})
        if extra or not stream:
            raise UnsupportedParameterError(
                f"stream_options {extra or sorted(stream_options)}: only include_usage, and only with stream=True"
            )
    t = 0.0 if temperature is None else float(temperature)
    p = 1.0 if top_p is None else float(top_p)
    if (t > 0.0 or p < 1.0) and not speculative:
        raise UnsupportedParameterError(
            f"temperature={t}, top_p={p}: the edge decodes greedily, so sampling is exact only when the cloud "
            "verifies every token: use EdgeClient(..., session=SessionConfig(strategy='speculative'))"
        )
    try:
        sampling = SamplingSettings(temperature=t, top_p=p, seed=seed)
    except ValueError as exc:
        raise UnsupportedParameterError(f"sampling parameters out of range: {exc}") from exc
    return ChatRequest(
        messages=_messages(messages),
        max_tokens=limit,
        sampling=sampling,
        stream=bool(stream),
        include_usage=bool(stream_options and stream_options.get("include_usage")),
    )
