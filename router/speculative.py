"""Acceptance rules of speculative decoding, as pure functions (no engine, no I/O).

- :func:`greedy_accept`: the longest draft prefix equal to the cloud's greedy tokens; the correction is
  the cloud's token at the first difference (or its next token after a fully accepted draft). With
  greedy cloud tokens this reproduces greedy cloud decoding token for token.
- :func:`rejection_accept`: the standard speculative-sampling rule (Leviathan et al. 2023, Chen et al.
  2023): accept draft token d_i with probability min(1, p(d_i) / q(d_i)); at the first rejection sample
  the correction from the residual max(0, p - q), normalised. ``p`` comes from the cloud's logprobs at
  each draft position (its top-N plus the drafted token, exact for those); ``q`` is known only on the
  drafted token (the edge sends log q(d_i)), so the residual is p restricted to the cloud's top-N
  without d_i: exact when the edge's q puts its mass on d_i (e.g. a low-temperature draft), an
  approximation otherwise, and tokens outside the cloud's top-N are never chosen as corrections.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
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


def rejection_accept(
    draft: Sequence[int],
    draft_logprobs: Sequence[float],
    cloud_rows: Sequence[Mapping[int, float]],
    rng: random.Random,
) -> Acceptance:
    """``cloud_rows[i]``: token id -> cloud logprob at the position of ``draft[i]`` (must hold draft[i]).

    Returns ``correction=None`` when every draft token is accepted (the caller's bonus token follows).
    """
    if not (len(draft) == len(draft_logprobs) == len(cloud_rows)):
        raise ValueError(f"lengths differ: draft {len(draft)}, logprobs {len(draft_logprobs)}, rows {len(cloud_rows)}")
    for i, (d, lq, row) in enumerate(zip(draft, draft_logprobs, cloud_rows, strict=True)):
        if d not in row:
            raise ValueError(f"cloud row {i} lacks the drafted token {d}")
        ratio = math.exp(min(0.0, row[d] - lq))
        if rng.random() < ratio:
            continue
        residual = [(tok, math.exp(lp)) for tok, lp in row.items() if tok != d]
        if not residual:
            raise ValueError(f"cloud row {i} holds no alternative to the rejected token {d}; ask for top_n >= 1")
        total = sum(w for _, w in residual)
        x = rng.random() * total
        for tok, w in residual:
            x -= w
            if x <= 0:
                return Acceptance(accepted=i, correction=tok)
        return Acceptance(accepted=i, correction=residual[-1][0])
    return Acceptance(accepted=len(draft), correction=None)
