"""What the router asks the engine-side verify processor to do, as one ``vllm_xargs`` string.

The router sends a verify as an ordinary completion from the committed prefix (so vLLM's prefix cache
serves it) with ``len(draft) + 1`` new tokens and this spec under :data:`XARG`. The engine's logits
processor (``server/engine/verify/vllm_adapter.py``) reads it at each step, on the full-vocabulary logits:

- ``VerifySpec`` (``"draft"``): at step i < len(draft) compute the request's own sampling distribution p
  (temperature, top-k, top-p, exactly as vLLM's sampler would) and apply the speculative-sampling rule
  against the edge's q row: keep draft[i] with probability min(1, p/q), else sample the correction from
  max(0, p - q) and force it; after a correction force ``stop_token`` so the request ends. With the
  whole draft kept, step len(draft) is vLLM's own sample (the bonus token).
- ``ForceSpec`` (``"force"``): force the given tokens one per step (the router's probe that the
  processor is loaded: without it vLLM would silently sample freely).

Plain data, JSON only: the router side imports nothing of vLLM or torch.

:func:`decode` is strict, since it runs inside vLLM on values any caller of vLLM's port can send: token
ids are JSON integers in 0..2**31-1 (no strings, booleans or floats), probabilities in [0, 1],
at most ``MAX_DRAFT`` draft tokens of at most ``MAX_DRAFT_SUPPORT`` q entries each. Ids are checked against
the model's vocabulary by the processor (:meth:`VerifySpec.max_token_id`), which alone knows it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from client_edge.protocol.edge_api import MAX_DRAFT, MAX_DRAFT_SUPPORT
from client_edge.protocol.engine_xargs import XARG_PREFIX

XARG = XARG_PREFIX + "verify"
VERSION = 1


class SpecError(ValueError):
    """A spec string that is not one this module writes."""


@dataclass(frozen=True)
class VerifySpec:
    draft: tuple[int, ...]
    dists: tuple[tuple[tuple[int, float], ...], ...]  # q rows: (token id, probability), support only
    seed: int
    stop_token: int | None

    @classmethod
    def build(
        cls, draft: Sequence[int], dists: Sequence[Mapping[int, float]], seed: int, stop_token: int | None
    ) -> VerifySpec:
        return cls(
            draft=tuple(int(d) for d in draft),
            dists=tuple(tuple((int(t), float(q)) for t, q in row.items()) for row in dists),
            seed=int(seed),
            stop_token=stop_token,
        )

    def encode(self) -> str:
        return json.dumps(
            {"v": VERSION, "draft": list(self.draft), "q": [[list(e) for e in row] for row in self.dists],
             "seed": self.seed, "stop": self.stop_token},
            separators=(",", ":"),
        )

    def max_token_id(self) -> int:
        """The largest token id the spec names (draft, q support, stop token)."""
        ids = [*self.draft, *(t for row in self.dists for t, _ in row)]
        if self.stop_token is not None:
            ids.append(self.stop_token)
        return max(ids, default=0)


@dataclass(frozen=True)
class ForceSpec:
    tokens: tuple[int, ...]

    def encode(self) -> str:
        return json.dumps({"v": VERSION, "force": list(self.tokens)}, separators=(",", ":"))

    def max_token_id(self) -> int:
        return max(self.tokens, default=0)


_MAX_ID = 2**31 - 1


def _token(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_ID:
        raise SpecError(f"{XARG}: {what} must be a token id (an integer in 0..{_MAX_ID}), got {value!r}")
    return value


def _tokens(value: Any, what: str, limit: int) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > limit:
        raise SpecError(f"{XARG}: {what} must be a list of at most {limit} token ids")
    return tuple(_token(t, what) for t in value)


def _prob(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and 0 <= value <= 1):
        raise SpecError(f"{XARG}: q probabilities must be numbers in [0, 1], got {value!r}")
    return float(value)


def _row(row: Any, i: int) -> tuple[tuple[int, float], ...]:
    if not isinstance(row, list) or not 0 < len(row) <= MAX_DRAFT_SUPPORT:
        raise SpecError(f"{XARG}: q row {i} must list 1..{MAX_DRAFT_SUPPORT} [token id, probability] pairs")
    out = []
    for entry in row:
        if not isinstance(entry, list) or len(entry) != 2:
            raise SpecError(f"{XARG}: q row {i} entries must be [token id, probability], got {entry!r}")
        out.append((_token(entry[0], f"q row {i}"), _prob(entry[1])))
    return tuple(out)


def decode(text: str) -> VerifySpec | ForceSpec:
    """Parse an ``xedge_verify`` value; :class:`SpecError` says what is wrong."""
    try:
        obj = json.loads(text)
    except (TypeError, ValueError, RecursionError) as exc:
        raise SpecError(f"{XARG} is not JSON: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("v") != VERSION:
        raise SpecError(f"{XARG} must be an object with v={VERSION}")
    if "force" in obj:
        return ForceSpec(tokens=_tokens(obj["force"], "force", MAX_DRAFT + 1))
    if not {"draft", "q", "seed"} <= obj.keys():
        raise SpecError(f"{XARG} is malformed: it needs draft, q and seed")
    draft = _tokens(obj["draft"], "draft", MAX_DRAFT)
    if not isinstance(obj["q"], list):
        raise SpecError(f"{XARG}: q must be a list of rows")
    dists = tuple(_row(row, i) for i, row in enumerate(obj["q"]))
    seed = obj["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise SpecError(f"{XARG}: seed must be an integer in 0..2**64-1, got {seed!r}")
    stop = None if obj.get("stop") is None else _token(obj["stop"], "stop")
    if len(dists) != len(draft):
        raise SpecError(f"{XARG}: {len(draft)} draft tokens but {len(dists)} q rows")
    for i, (d, row) in enumerate(zip(draft, dists, strict=True)):
        if not any(t == d and q > 0.0 for t, q in row):
            raise SpecError(f"{XARG}: q row {i} gives the drafted token {d} no probability")
    return VerifySpec(draft=draft, dists=dists, seed=seed, stop_token=stop)
