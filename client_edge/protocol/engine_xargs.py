"""Router -> vLLM EngineCore request metadata: the ``xedge_*`` keys of ``vllm_xargs``, written by the
router (:func:`encode_request_meta`) and parsed inside vLLM by the eviction policy (:func:`parse_request_meta`).

Every key that starts with :data:`XARG_PREFIX` belongs to xedge: the router writes them, and a client may
never send one (``router/proxy.py`` refuses them). The verify logits processor's key is
:data:`client_edge.protocol.verify_spec.XARG` (same prefix).

Over the OpenAI API the metadata travels in vLLM's ``vllm_xargs`` request field (flat: vLLM 0.32 accepts
only string / number values there), which vLLM copies into ``SamplingParams.extra_args``::

    {"vllm_xargs": {"xedge_category": "chat", "xedge_tenant": "acme",
                    "xedge_pin_ttl_s": 600, "xedge_pin_tokens": 512}}

Offline callers may pass the same keys, or one nested dict ``{"xedge": {"category": ...}}``.

Edge-session keys (session-aware eviction, docs/prefix_cache.md "Session-aware eviction"): the router
sends, with every engine call it makes for an edge session, ``xedge_session`` (an opaque key of the
session, not its id), ``xedge_session_ttl_s`` (seconds the session lives without another call: the
engine treats it as closed after that), optionally ``xedge_session_final`` (1: the session ends with
this call) and ``xedge_closed_sessions`` (comma-separated keys of sessions closed, by DELETE, since
the router's previous call to this replica: a close is announced on the next call, whoever's it is)::

    {"vllm_xargs": {"xedge_category": "edge-session", "xedge_session": "3f1c...", "xedge_session_ttl_s": 3600,
                    "xedge_closed_sessions": "9ab0...,77de..."}}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_CATEGORY = "default"
XARG_PREFIX = "xedge_"
_FIELDS = (
    "category",
    "tenant",
    "pin_ttl_s",
    "pin_tokens",
    "session",
    "session_ttl_s",
    "session_final",
    "closed_sessions",
)
_PREFIX = XARG_PREFIX
KEY_CATEGORY = XARG_PREFIX + "category"
KEY_TENANT = XARG_PREFIX + "tenant"
KEY_PIN_TTL_S = XARG_PREFIX + "pin_ttl_s"
KEY_PIN_TOKENS = XARG_PREFIX + "pin_tokens"
KEY_SESSION = XARG_PREFIX + "session"
KEY_SESSION_TTL_S = XARG_PREFIX + "session_ttl_s"
KEY_SESSION_FINAL = XARG_PREFIX + "session_final"
KEY_CLOSED_SESSIONS = XARG_PREFIX + "closed_sessions"
MAX_CLOSED_SESSIONS = 32  # per request; the router carries the rest on later requests


class InvalidRequestMeta(ValueError):
    """The request's xedge metadata is malformed (the API layer turns it into a 400)."""


@dataclass(frozen=True)
class RequestMeta:
    """category: reuse class of the request (e.g. ``chat-first``, ``chat-followup``, ``api``).
    tenant: who sent it (metrics only). pin_ttl_s: pin the prompt prefix this long after each use.
    pin_tokens: how many leading prompt tokens to pin (None: the whole prompt).
    session: the edge session the request belongs to (an opaque key), None for other traffic.
    session_ttl_s: the session is closed if no request of it comes within this many seconds.
    session_final: the session ends with this request.
    closed_sessions: keys of other sessions closed since the router's previous request here."""

    category: str = DEFAULT_CATEGORY
    tenant: str | None = None
    pin_ttl_s: float | None = None
    pin_tokens: int | None = None
    session: str | None = None
    session_ttl_s: float | None = None
    session_final: bool = False
    closed_sessions: tuple[str, ...] = ()

    def pin_until(self, offset: int, block_tokens: int, now: float) -> float | None:
        """The pin expiry for prefix block ``offset`` of this request, or None when it is not pinned."""
        if self.pin_ttl_s is None:
            return None
        if self.pin_tokens is not None and (offset + 1) * block_tokens > self.pin_tokens:
            return None
        return now + self.pin_ttl_s


DEFAULT_META = RequestMeta()


def parse_request_meta(extra_args: Mapping[str, Any] | None) -> RequestMeta:
    """Read ``xedge_*`` keys (or a nested ``xedge`` dict) from ``extra_args``; other keys are ignored.

    Raises InvalidRequestMeta with the offending field and value."""
    if not extra_args:
        return DEFAULT_META
    raw: dict[str, Any] = {}
    nested = extra_args.get("xedge")
    if nested is not None:
        if not isinstance(nested, Mapping):
            raise InvalidRequestMeta(f"'xedge' must be an object, got {type(nested).__name__}")
        unknown = sorted(set(nested) - set(_FIELDS))
        if unknown:
            raise InvalidRequestMeta(f"unknown xedge fields {unknown}; valid: {list(_FIELDS)}")
        raw.update(nested)
    for field in _FIELDS:
        if _PREFIX + field in extra_args:
            raw[field] = extra_args[_PREFIX + field]
    if not raw:
        return DEFAULT_META
    return RequestMeta(
        category=_text(raw, "category", DEFAULT_CATEGORY),
        tenant=_text(raw, "tenant", None),
        pin_ttl_s=_positive(raw, "pin_ttl_s", float),
        pin_tokens=_positive(raw, "pin_tokens", int),
        session=_text(raw, "session", None),
        session_ttl_s=_positive(raw, "session_ttl_s", float),
        session_final=_flag(raw, "session_final"),
        closed_sessions=_key_list(raw, "closed_sessions"),
    )


def _flag(raw: dict[str, Any], field: str) -> bool:
    value = raw.get(field)
    if value is None:
        return False
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise InvalidRequestMeta(f"xedge {field} must be 0 or 1, got {value!r}")


def _key_list(raw: dict[str, Any], field: str) -> tuple[str, ...]:
    value = raw.get(field)
    if value is None or value == "":
        return ()
    if not isinstance(value, str):
        raise InvalidRequestMeta(f"xedge {field} must be a comma-separated string, got {value!r}")
    keys = tuple(value.split(","))
    if len(keys) > MAX_CLOSED_SESSIONS or not all(0 < len(k) <= 64 for k in keys):
        raise InvalidRequestMeta(
            f"xedge {field} must hold 1 to {MAX_CLOSED_SESSIONS} non-empty keys of <= 64 chars, got {value[:200]!r}"
        )
    return keys


def _text(raw: dict[str, Any], field: str, default: str | None) -> str | None:
    value = raw.get(field)
    if value is None:
        return default
    if not isinstance(value, str) or not value or len(value) > 64:
        raise InvalidRequestMeta(f"xedge {field} must be a non-empty string of <= 64 chars, got {value!r}")
    return value


def _positive(raw: dict[str, Any], field: str, kind: type) -> Any:
    value = raw.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequestMeta(f"xedge {field} must be a positive number, got {value!r}")
    if kind is int and value != int(value):
        raise InvalidRequestMeta(f"xedge {field} must be a positive integer, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise InvalidRequestMeta(f"xedge {field} must be positive and finite, got {value!r}")
    return kind(value)


def encode_request_meta(meta: RequestMeta) -> tuple[tuple[str, str | int | float], ...]:
    """The flat ``vllm_xargs`` pairs for ``meta`` (fields left at their default are omitted)."""
    pairs: list[tuple[str, str | int | float]] = []
    if meta.category != DEFAULT_CATEGORY:
        pairs.append((KEY_CATEGORY, meta.category))
    if meta.tenant is not None:
        pairs.append((KEY_TENANT, meta.tenant))
    if meta.pin_ttl_s is not None:
        pairs.append((KEY_PIN_TTL_S, meta.pin_ttl_s))
    if meta.pin_tokens is not None:
        pairs.append((KEY_PIN_TOKENS, meta.pin_tokens))
    if meta.session is not None:
        pairs.append((KEY_SESSION, meta.session))
    if meta.session_ttl_s is not None:
        pairs.append((KEY_SESSION_TTL_S, meta.session_ttl_s))
    if meta.session_final:
        pairs.append((KEY_SESSION_FINAL, 1))
    if meta.closed_sessions:
        if len(meta.closed_sessions) > MAX_CLOSED_SESSIONS:
            raise ValueError(
                f"at most {MAX_CLOSED_SESSIONS} closed sessions per request, got {len(meta.closed_sessions)}"
            )
        pairs.append((KEY_CLOSED_SESSIONS, ",".join(meta.closed_sessions)))
    return tuple(pairs)


def is_router_owned(key: str) -> bool:
    """True for every ``vllm_xargs`` key only the router may write (clients' copies are refused); any
    spelling of the prefix counts, so a reader that ever normalises case cannot be reached around it."""
    folded = key.casefold()
    return folded.startswith(XARG_PREFIX) or folded == "xedge"
