"""Seeded synthetic traces for the workloads "KVCache Cache in the Wild" (USENIX ATC'25) describes.

Each generator returns a ``Trace`` (the simulator's input, as read from a file): arrival times, prompt
and output lengths, prompt blocks as prefix-path keys (equal key = equal prefix) and a category per
request, the label a server would send (``xedge_category``). All randomness comes from ``seed``.

- ``api``: API calls, each one of ``num_prompts`` system prompts drawn Zipf-popular, then a unique
  user message.
- ``chat``: multi-turn conversations; the next turn comes after a heavy-tailed (Pareto) think time
  or never; each turn re-sends the whole history. Category: the turn.
- ``agent``: agent/tool loops: a long shared tool prefix (one of a few), then many quick steps that
  each append a tool result.
- ``rag``: retrieval: a system prompt, then one of many documents (Zipf-popular), then a unique query.
- ``burst``: chat traffic interrupted by bursts of one-shot prompts (batch jobs) that are never reused.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field, replace
from itertools import count

from client_edge.protocol.engine_xargs import MAX_CLOSED_SESSIONS, RequestMeta
from server.research.cache_sim.trace import Trace, prefix_keys, turn_category

BLOCK_TOKENS = 64


@dataclass
class _Builder:
    """Collects (time, content blocks, category, output) requests; ``build`` sorts them by time and
    interns prefix paths as keys, as ``read_trace`` does."""

    requests: list[tuple[float, int, tuple[int, ...], str, int, RequestMeta | None]] = field(
        default_factory=list
    )
    closes: list[tuple[float, str]] = field(default_factory=list)  # (time, session key) of DELETEs
    _order: Iterator[int] = field(default_factory=count)
    _content: Iterator[int] = field(default_factory=count)

    def fresh(self, n: int) -> tuple[int, ...]:
        """``n`` blocks of content never seen before."""
        return tuple(next(self._content) for _ in range(n))

    def add(
        self,
        time_s: float,
        blocks: tuple[int, ...],
        category: str,
        output_tokens: int,
        meta: RequestMeta | None = None,
    ) -> None:
        """One request; ``meta`` (its own metadata, e.g. a session's) replaces the category's."""
        self.requests.append((time_s, next(self._order), blocks, category, output_tokens, meta))

    def build(self) -> Trace:
        """The trace; a session closed at time t is announced on the first request at or after t (as the
        router announces a DELETE on its next call to the replica)."""
        self.requests.sort(key=lambda r: (r[0], r[1]))
        closes = sorted(self.closes, reverse=True)
        paths: dict[tuple[int, Hashable], int] = {}
        metas: dict[str, RequestMeta] = {}
        times, inputs, outputs, keys_out, metas_out = [], [], [], [], []
        for time_s, _, blocks, category, output, own_meta in self.requests:
            keys = prefix_keys(blocks, paths)
            meta = own_meta or metas.get(category)
            if meta is None:
                meta = metas[category] = RequestMeta(category=category)
            announced = []
            while closes and closes[-1][0] <= time_s and len(announced) < MAX_CLOSED_SESSIONS:
                announced.append(closes.pop()[1])
            if announced:
                meta = replace(meta, closed_sessions=tuple(announced))
            times.append(time_s)
            inputs.append(len(blocks) * BLOCK_TOKENS)
            outputs.append(output)
            keys_out.append(keys)
            metas_out.append(meta)
        return Trace("mooncake", BLOCK_TOKENS, times, inputs, outputs, keys_out, metas_out)


def _zipf_sampler(rng: random.Random, n: int, a: float) -> Callable[[], int]:
    weights = [1.0 / (i + 1) ** a for i in range(n)]
    cum, total = [], 0.0
    for w in weights:
        total += w
        cum.append(total)
    return lambda: min(n - 1, _bisect(cum, rng.random() * total))


def _bisect(cum: list[float], x: float) -> int:
    lo, hi = 0, len(cum)
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _pareto(rng: random.Random, scale: float, alpha: float) -> float:
    return scale * rng.paretovariate(alpha)


def api(seed: int, num_requests: int = 4000, num_prompts: int = 300, rate_per_s: float = 4.0) -> Trace:
    rng, b = random.Random(seed), _Builder()
    prompts = [b.fresh(rng.randint(2, 16)) for _ in range(num_prompts)]
    pick = _zipf_sampler(rng, num_prompts, 1.0)
    t = 0.0
    for _ in range(num_requests):
        t += rng.expovariate(rate_per_s)
        b.add(t, prompts[pick()] + b.fresh(rng.randint(1, 3)), "api", rng.randint(20, 400))
    return b.build()


def _conversation(
    b: _Builder, rng: random.Random, start: float, system: tuple[int, ...], prefix: str = ""
) -> int:
    """One conversation from ``start``; returns its number of requests."""
    history, t, turn = system, start, 0
    while True:
        turn += 1
        history = history + b.fresh(rng.randint(1, 4))
        b.add(t, history, prefix + turn_category(turn), rng.randint(20, 600))
        if turn >= 30 or rng.random() > 0.6 + 0.03 * min(turn, 10):
            return turn
        history = history + b.fresh(rng.randint(1, 3))  # the answer joins the history
        t += _pareto(rng, 15.0, 1.3)


def chat(seed: int, num_requests: int = 4000, rate_per_s: float = 0.8) -> Trace:
    rng, b = random.Random(seed), _Builder()
    systems = [b.fresh(2) for _ in range(3)]
    t, n = 0.0, 0
    while n < num_requests:
        t += rng.expovariate(rate_per_s)
        n += _conversation(b, rng, t, rng.choice(systems))
    return b.build()


def agent(seed: int, num_requests: int = 4000, rate_per_s: float = 0.1) -> Trace:
    rng, b = random.Random(seed), _Builder()
    tools = [b.fresh(rng.randint(16, 32)) for _ in range(4)]
    t, n = 0.0, 0
    while n < num_requests:
        t += rng.expovariate(rate_per_s)
        history, step_t = rng.choice(tools) + b.fresh(2), t
        for _ in range(rng.randint(3, 40)):
            b.add(step_t, history, "agent", rng.randint(10, 200))
            n += 1
            history = history + b.fresh(rng.randint(1, 2))
            step_t += rng.expovariate(1 / 3.0)
    return b.build()


def rag(seed: int, num_requests: int = 4000, num_docs: int = 1500, rate_per_s: float = 4.0) -> Trace:
    rng, b = random.Random(seed), _Builder()
    system = b.fresh(1)
    docs = [b.fresh(rng.randint(4, 12)) for _ in range(num_docs)]
    pick = _zipf_sampler(rng, num_docs, 0.9)
    t = 0.0
    for _ in range(num_requests):
        t += rng.expovariate(rate_per_s)
        b.add(t, system + docs[pick()] + b.fresh(1), "rag", rng.randint(50, 300))
    return b.build()


def burst(seed: int, num_requests: int = 4000, chat_rate_per_s: float = 0.5) -> Trace:
    rng, b = random.Random(seed), _Builder()
    systems = [b.fresh(2) for _ in range(2)]
    t, n = 0.0, 0
    next_burst = rng.expovariate(1 / 60.0)
    while n < num_requests:
        t += rng.expovariate(chat_rate_per_s)
        n += _conversation(b, rng, t, rng.choice(systems), prefix="chat-")
        while next_burst < t:
            size = rng.randint(50, 200)
            times = sorted(next_burst + 2.0 * rng.random() for _ in range(size))
            for bt in times:
                b.add(bt, b.fresh(rng.randint(4, 12)), "batch", rng.randint(1, 50))
            n += size
            next_burst += rng.expovariate(1 / 60.0)
    return b.build()


def edge_sessions(
    seed: int,
    num_sessions: int = 1000,
    open_rate_per_s: float = 1.0,
    ttl_s: float = 120.0,
    delete_share: float = 0.7,
) -> Trace:
    """Edge sessions (the router's ``/v1/sessions``): each opens on a context (a shared system prompt
    and its own 8-24 blocks), escalates a geometric number of times (mean 8) after exponential think
    times (mean 10 s), each escalation adding one block, then ends: by DELETE (``delete_share``;
    announced on the next request) or abandoned (the engine sees its TTL run out). Every request of a
    session carries its key and TTL (``RequestMeta.session``, ``session_ttl_s``)."""
    rng, b = random.Random(seed), _Builder()
    system = b.fresh(2)
    t = 0.0
    for i in range(num_sessions):
        t += rng.expovariate(open_rate_per_s)
        key = f"s{i}"
        meta = RequestMeta(category="edge-session", session=key, session_ttl_s=ttl_s)
        context, step_t = system + b.fresh(rng.randint(8, 24)), t
        b.add(step_t, context, "edge-session", 1, meta)  # create with prefill
        while True:
            step_t += rng.expovariate(1 / 10.0)
            context = context + b.fresh(1)
            b.add(step_t, context, "edge-session", 4, meta)
            if rng.random() < 1 / 8:
                break
        if rng.random() < delete_share:
            b.closes.append((step_t + rng.uniform(0.1, 2.0), key))
    return b.build()


def edge_rotation(
    seed: int, num_sessions: int = 20, rounds: int = 10, context_blocks: tuple[int, int] = (30, 50)
) -> Trace:
    """``num_sessions`` concurrent edge sessions that escalate in turn (every 10 s, jittered), each
    escalation adding one block to a context of ``context_blocks`` blocks: the pattern LRU handles worst
    (each session's blocks are the least recently used just before it comes back)."""
    rng, b = random.Random(seed), _Builder()
    system = b.fresh(2)
    metas = [
        RequestMeta(category="edge-session", session=f"r{k}", session_ttl_s=600.0)
        for k in range(num_sessions)
    ]
    contexts = [system + b.fresh(rng.randint(*context_blocks)) for _ in range(num_sessions)]
    period = 10.0 / num_sessions
    for r in range(rounds):
        for k in range(num_sessions):
            contexts[k] = contexts[k] + b.fresh(1)
            b.add(
                r * 10.0 + k * period + rng.uniform(0, 0.5 * period), contexts[k], "edge-session", 4, metas[k]
            )
    return b.build()


GENERATORS: dict[str, Callable[..., Trace]] = {
    "api": api,
    "chat": chat,
    "agent": agent,
    "rag": rag,
    "burst": burst,
}


def generate(name: str, seed: int, num_requests: int) -> Trace:
    """The ``name`` workload (``GENERATORS``) with ``num_requests`` (about, for session workloads)."""
    if name not in GENERATORS:
        raise ValueError(f"unknown workload {name!r}; valid: {', '.join(sorted(GENERATORS))}")
    if num_requests <= 0:
        raise ValueError(f"num_requests must be positive, got {num_requests}")
    return GENERATORS[name](seed, num_requests)


def footprint_blocks(trace: Trace) -> int:
    """Distinct blocks of the trace: the capacity of the infinite cache."""
    return len({k for keys in trace.blocks for k in keys})
