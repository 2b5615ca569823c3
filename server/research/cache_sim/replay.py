"""Replay a trace against one policy and one capacity.

Per request, at its arrival: the hit is the longest *contiguous* cached prefix of its blocks; those
blocks are in use (unevictable) until the request completes. At completion (arrival + service time,
``ServiceModel``; zero by default, i.e. served at once) its missing blocks are inserted in prefix order,
evicting free blocks the policy picks, and all its blocks are freed tail first, as vLLM does. When
every cached block is in use, the blocks that do not fit are not cached. ``capacity_blocks=None`` is the
infinite cache (the ideal ratio).

Trace blocks are cached whole, including a prompt's partial last block (vLLM caches full blocks only;
the traces' published replays count partial ones). A partial block is reported to the policy under the
category ``<request category>/partial``: the pool knows a block is partial, and it is almost never
reused (its content grows in the next turn).
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field, replace

from client_edge.protocol.engine_xargs import RequestMeta
from server.engine.prefix_cache.policy import EvictionPolicy
from server.research.cache_sim.belady import BeladyPolicy, next_uses
from server.research.cache_sim.trace import Trace


@dataclass(frozen=True)
class ServiceModel:
    """How long a request holds its blocks: prefill of its uncached tokens plus decode of its output."""

    prefill_s_per_token: float = 0.0
    decode_s_per_token: float = 0.0

    def __post_init__(self) -> None:
        if self.prefill_s_per_token < 0 or self.decode_s_per_token < 0:
            raise ValueError(f"service times must be >= 0, got {self}")

    @property
    def instant(self) -> bool:
        return self.prefill_s_per_token == 0 and self.decode_s_per_token == 0


@dataclass
class SimResult:
    policy: str
    capacity_blocks: int | None
    block_tokens: int
    query_tokens: int = 0
    hit_tokens: int = 0
    query_blocks: int = 0
    hit_blocks: int = 0
    evictions: int = 0
    uncacheable_blocks: int = 0
    seconds: float = 0.0
    categories: dict[str, list[int]] = field(default_factory=dict)  # category -> [query, hit] tokens
    request_hit_tokens: list[int] | None = None  # per scored request, when replay(record=True)

    @property
    def token_hit_ratio(self) -> float:
        return self.hit_tokens / self.query_tokens if self.query_tokens else 0.0

    @property
    def block_hit_ratio(self) -> float:
        return self.hit_blocks / self.query_blocks if self.query_blocks else 0.0

    def to_json(self) -> dict:
        return {
            "policy": self.policy,
            "capacity_tokens": None
            if self.capacity_blocks is None
            else self.capacity_blocks * self.block_tokens,
            "capacity_blocks": self.capacity_blocks,
            "token_hit_ratio": round(self.token_hit_ratio, 6),
            "block_hit_ratio": round(self.block_hit_ratio, 6),
            "hit_tokens": self.hit_tokens,
            "query_tokens": self.query_tokens,
            "evictions": self.evictions,
            "uncacheable_blocks": self.uncacheable_blocks,
            "seconds": round(self.seconds, 3),
            "category_token_hit_ratio": {
                c: round(h / q, 6) if q else 0.0 for c, (q, h) in sorted(self.categories.items())
            },
        }


def replay(
    trace: Trace,
    policy: EvictionPolicy | None,
    service: ServiceModel | None = None,
    score_from_s: float | None = None,
    record: bool = False,
) -> SimResult:
    """Run the whole trace; ``policy`` None simulates the infinite cache. ``score_from_s``: count only
    requests arriving at or after this time (the policy still sees, and learns from, the earlier ones:
    fit on the first part, score on the rest). ``record``: keep every scored request's hit tokens."""
    service = service or ServiceModel()
    start = time.perf_counter()
    bt = trace.block_tokens
    result = SimResult(
        policy=policy.name if policy is not None else "infinite",
        capacity_blocks=policy.capacity_blocks if policy is not None else None,
        block_tokens=bt,
    )
    capacity = policy.capacity_blocks if policy is not None else 1 << 62
    oracle = next_uses(trace.blocks) if isinstance(policy, BeladyPolicy) else None
    cached: set[int] = set()
    refs: dict[int, int] = {}
    pending: list[tuple[float, int, int]] = []  # (completion time, request index, hit blocks)
    categories = result.categories
    hits_of = result.request_hit_tokens = [] if record else None
    partial_metas: dict[str, RequestMeta] = {}

    def tail_meta(i: int, meta: RequestMeta) -> RequestMeta:
        """The metadata of request i's last block: its own category when the block is partial."""
        if trace.input_tokens[i] % bt == 0:
            return meta
        partial = partial_metas.get(meta.category)
        if partial is None:
            partial = partial_metas[meta.category] = replace(meta, category=meta.category + "/partial")
        return partial

    def complete(i: int, n_hit: int, now: float) -> None:
        keys, meta = trace.blocks[i], trace.metas[i]
        last, last_meta = len(keys) - 1, tail_meta(i, meta)
        missing = []
        for j in range(n_hit, len(keys)):
            k = keys[j]
            if k in cached:  # cached beyond a gap: not a hit, but in use now
                refs[k] = refs.get(k, 0) + 1
                if policy is not None:
                    policy.on_hit(k, meta, now)
            else:
                missing.append(j)
        if missing and policy is not None:
            overflow = len(cached) + len(missing) - capacity
            if overflow > 0:
                n_evict = min(overflow, len(policy))
                for victim in policy.evict(n_evict, now):
                    cached.discard(victim)
                result.evictions += n_evict
                room = capacity - len(cached)
                if room < len(missing):
                    result.uncacheable_blocks += len(missing) - room
                    missing = missing[:room]
        for j in missing:
            k = keys[j]
            cached.add(k)
            refs[k] = refs.get(k, 0) + 1
            if policy is not None:
                policy.on_cached(k, j, last_meta if j == last else meta, now, k)
        if oracle is not None:
            for k, nxt in zip(keys, oracle[i], strict=True):
                policy.set_next_use(k, nxt)
        for j in range(len(keys) - 1, -1, -1):
            k = keys[j]
            r = refs.get(k)
            if r is None:
                continue  # not cached (did not fit)
            if r == 1:
                del refs[k]
                if policy is not None:
                    policy.on_freed(k, last_meta if j == last else meta, now)
            else:
                refs[k] = r - 1

    def complete_or_defer(i: int, n_hit: int, now: float, hit_tokens: int) -> None:
        if service.instant:
            complete(i, n_hit, now)
        else:
            done = (
                now
                + service.prefill_s_per_token * (trace.input_tokens[i] - hit_tokens)
                + service.decode_s_per_token * trace.output_tokens[i]
            )
            heapq.heappush(pending, (done, i, n_hit))

    for i, now in enumerate(trace.times_s):
        while pending and pending[0][0] <= now:
            t, j, n = heapq.heappop(pending)
            complete(j, n, t)
        keys, meta, n_in = trace.blocks[i], trace.metas[i], trace.input_tokens[i]
        n_hit = 0
        for k in keys:
            if k not in cached:
                break
            n_hit += 1
        for k in keys[:n_hit]:
            refs[k] = refs.get(k, 0) + 1
            if policy is not None:
                policy.on_hit(k, meta, now)
        hit_tokens = min(n_hit * bt, n_in)
        if score_from_s is not None and now < score_from_s:
            complete_or_defer(i, n_hit, now, hit_tokens)
            continue
        result.query_tokens += n_in
        result.hit_tokens += hit_tokens
        if hits_of is not None:
            hits_of.append(hit_tokens)
        result.query_blocks += len(keys)
        result.hit_blocks += n_hit
        per = categories.get(meta.category)
        if per is None:
            per = categories[meta.category] = [0, 0]
        per[0] += n_in
        per[1] += hit_tokens
        complete_or_defer(i, n_hit, now, hit_tokens)
    while pending:
        t, j, n = heapq.heappop(pending)
        complete(j, n, t)
    result.seconds = time.perf_counter() - start
    return result
