"""Acceptance rules of speculative decoding, as pure functions (no engine, no I/O).

- :func:`greedy_accept`: the longest draft prefix equal to the cloud's greedy tokens; the correction is
  the cloud's token at the first difference (or its next token after a fully accepted draft). With
  greedy cloud tokens this reproduces greedy cloud decoding token for token.

The sampling rule needs the full-vocabulary distribution, so it runs in the engine
(``server/engine/verify/rule.py`` via the vLLM logits processor; see ``router/verification.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Acceptance:
    """``accepted`` leading draft tokens; ``correction`` the cloud token after them (None: use the
    engine's own next token, e.g. its bonus token after a fully accepted draft)."""

    accepted: int
    correction: int | None


def common_prefix(a: Sequence[object], b: Sequence[object]) -> int:
    """Length of the longest common prefix of two sequences (token ids or characters)."""
    n = 0
    while n < len(a) and n < len(b) and a[n] == b[n]:
        n += 1
    return n


def greedy_accept(draft: Sequence[int], cloud: Sequence[int]) -> Acceptance:
    """``cloud``: the cloud's greedy tokens from the same position (at least len(draft) + 1 unless it stopped)."""
    n = common_prefix(draft, cloud)
    return Acceptance(accepted=n, correction=cloud[n] if n < len(cloud) else None)
