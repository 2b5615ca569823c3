"""Conversations of a Mooncake-style trace, request features, and re-labelling a trace by them.

A conversation is what the trace reader's turn category uses: the requests that share their first two
prefix blocks (block 0 is the system prompt every request shares); a request of fewer blocks is a
conversation of its own. Per request: its turn, the gap since its conversation's previous request (what
a server knows at arrival) and the gap to its next one (hindsight only; None when the conversation
ends). ``relabel`` gives a trace the categories of another labelling (bench/prefix_cache_limits.py).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

from client_edge.protocol.engine_xargs import RequestMeta
from server.research.cache_sim.trace import Trace


@dataclass(frozen=True)
class Conversations:
    ids: list[int]  # per request: its conversation
    turns: list[int]  # per request: 1 for a conversation's first request
    prev_gap_s: list[float | None]  # seconds since the conversation's previous request (None: turn 1)
    next_gap_s: list[float | None]  # seconds to the conversation's next request (None: it ends)

    @property
    def num_conversations(self) -> int:
        return len(set(self.ids))

    def turn_counts(self) -> dict[int, int]:
        """Conversation id -> its number of requests."""
        counts: dict[int, int] = {}
        for c in self.ids:
            counts[c] = counts.get(c, 0) + 1
        return counts


def conversations(trace: Trace) -> Conversations:
    ids = [keys[1] if len(keys) > 1 else -1 - i for i, keys in enumerate(trace.blocks)]
    turns: list[int] = []
    prev_gap: list[float | None] = []
    next_gap: list[float | None] = [None] * len(ids)
    last: dict[int, int] = {}  # conversation -> index of its latest request so far
    for i, (c, now) in enumerate(zip(ids, trace.times_s, strict=True)):
        j = last.get(c)
        turns.append(1 if j is None else turns[j] + 1)
        prev_gap.append(None if j is None else now - trace.times_s[j])
        if j is not None:
            next_gap[j] = now - trace.times_s[j]
        last[c] = i
    return Conversations(ids, turns, prev_gap, next_gap)


def relabel(trace: Trace, labels: Sequence[str]) -> Trace:
    """The same trace with request i's category set to ``labels[i]`` (its other metadata kept)."""
    if len(labels) != len(trace):
        raise ValueError(f"{len(labels)} labels for {len(trace)} requests")
    cache: dict[tuple[RequestMeta, str], RequestMeta] = {}
    metas = []
    for meta, label in zip(trace.metas, labels, strict=True):
        new = cache.get((meta, label))
        if new is None:
            new = cache[(meta, label)] = replace(meta, category=label)
        metas.append(new)
    return replace(trace, metas=metas)


def bin_labels(edges: Sequence[float], unit: str = "") -> list[str]:
    """Labels of the bins cut by ascending ``edges``: ``<e0``, ``e0-e1``, ..., ``>=eN``."""
    inner = [f"{lo:g}-{hi:g}{unit}" for lo, hi in zip(edges, edges[1:], strict=False)]
    return [f"<{edges[0]:g}{unit}", *inner, f">={edges[-1]:g}{unit}"]


def bin_label(value: float, edges: Sequence[float], unit: str = "") -> str:
    """The ``bin_labels`` label of the bin holding ``value`` (a bin includes its lower edge)."""
    index = sum(1 for e in edges if value >= e)
    return bin_labels(edges, unit)[index]


@dataclass(frozen=True)
class ContinuationStat:
    """Of the requests in one group: how many, the share whose conversation has a next request, and
    the median gap to it (over those that have one; None if none has)."""

    requests: int
    continue_share: float
    median_next_gap_s: float | None

    def to_json(self) -> dict:
        gap = None if self.median_next_gap_s is None else round(self.median_next_gap_s, 1)
        return {
            "requests": self.requests,
            "continue_share": round(self.continue_share, 3),
            "median_next_gap_s": gap,
        }


def continuation_by(
    groups: Sequence[str], conv: Conversations, order: Sequence[str]
) -> dict[str, ContinuationStat]:
    """``ContinuationStat`` per group (request i is in ``groups[i]``), in ``order``; empty groups left out."""
    gaps: dict[str, list[float | None]] = {g: [] for g in order}
    for group, gap in zip(groups, conv.next_gap_s, strict=True):
        if group not in gaps:
            raise ValueError(f"group {group!r} is not in the order {list(order)}")
        gaps[group].append(gap)
    out = {}
    for group, values in gaps.items():
        if not values:
            continue
        known = [g for g in values if g is not None]
        out[group] = ContinuationStat(
            len(values), len(known) / len(values), statistics.median(known) if known else None
        )
    return out
