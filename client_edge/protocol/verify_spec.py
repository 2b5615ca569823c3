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
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class ForceSpec:
    tokens: tuple[int, ...]

    def encode(self) -> str:
        return json.dumps({"v": VERSION, "force": list(self.tokens)}, separators=(",", ":"))


def decode(text: str) -> VerifySpec | ForceSpec:
    """Parse an ``xedge_verify`` value; :class:`SpecError` says what is wrong."""
    try:
        obj = json.loads(text)
    except (TypeError, json.JSONDecodeError) as exc:
        raise SpecError(f"{XARG} is not JSON: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("v") != VERSION:
        raise SpecError(f"{XARG} must be an object with v={VERSION}")
    try:
        if "force" in obj:
            return ForceSpec(tokens=tuple(int(t) for t in obj["force"]))
        draft = tuple(int(t) for t in obj["draft"])
        dists = tuple(tuple((int(t), float(q)) for t, q in row) for row in obj["q"])
        seed = int(obj["seed"])
        stop = None if obj.get("stop") is None else int(obj["stop"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SpecError(f"{XARG} is malformed: {exc!r}") from exc
    if len(dists) != len(draft):
        raise SpecError(f"{XARG}: {len(draft)} draft tokens but {len(dists)} q rows")
    for i, (d, row) in enumerate(zip(draft, dists, strict=True)):
        if not any(t == d and q > 0.0 for t, q in row):
            raise SpecError(f"{XARG}: q row {i} gives the drafted token {d} no probability")
    return VerifySpec(draft=draft, dists=dists, seed=seed, stop_token=stop)
