"""Run every (policy, capacity) pair of a trace, plus the infinite cache, and compare them.

``belady`` is the upper bound and ``lru`` (vLLM's order) the baseline; for every other policy the
report gives the share of the lru -> belady gap it closes at each capacity.
"""

from __future__ import annotations

import multiprocessing
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from server.engine.prefix_cache.config import PolicyConfig
from server.engine.prefix_cache.registry import ORACLE_POLICIES, POLICIES, UnknownPolicyError, policy_class
from server.research.cache_sim.replay import ServiceModel, SimResult, replay
from server.research.cache_sim.trace import Trace

ALL_POLICIES = (*POLICIES, *ORACLE_POLICIES)
_CAPACITY = re.compile(r"^([0-9]+)([kKmMgG]?)$")
_SCALE = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}


class GridInputError(ValueError):
    """A bad capacity or policy list; the message says what was expected."""


def parse_capacities(text: str) -> tuple[int, ...]:
    """``"1M,2M,3000000"`` -> token capacities. Each must be a positive integer (suffix k/M/G allowed)."""
    out = []
    for item in text.split(","):
        match = _CAPACITY.match(item.strip())
        if match is None:
            raise GridInputError(f"capacity {item.strip()!r} is not a positive integer (e.g. 3000000 or 3M)")
        value = int(match.group(1)) * _SCALE[match.group(2).lower()]
        if value <= 0:
            raise GridInputError(f"capacity {item.strip()!r} must be positive")
        out.append(value)
    return tuple(out)


def parse_policies(text: str) -> tuple[str, ...]:
    """``"all"`` or a comma list of registered policy names (``belady`` included)."""
    if text.strip() == "all":
        return ALL_POLICIES
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise GridInputError("no policy given")
    for name in names:
        try:
            policy_class(name, allow_oracle=True)
        except UnknownPolicyError as exc:
            raise GridInputError(str(exc)) from None
    return names


@dataclass(frozen=True)
class GridResult:
    trace_name: str
    num_requests: int
    block_tokens: int
    capacities_tokens: tuple[int, ...]
    policies: tuple[str, ...]
    results: tuple[SimResult, ...]
    infinite: SimResult

    def get(self, policy: str, capacity_tokens: int) -> SimResult:
        for r in self.results:
            if r.policy == policy and r.capacity_blocks == capacity_tokens // self.block_tokens:
                return r
        raise KeyError((policy, capacity_tokens))

    def gap_closed(self, policy: str, capacity_tokens: int) -> float | None:
        """(policy - lru) / (belady - lru) in token hit ratio; None without both baselines or a gap."""
        if "lru" not in self.policies or "belady" not in self.policies:
            return None
        lru = self.get("lru", capacity_tokens).token_hit_ratio
        belady = self.get("belady", capacity_tokens).token_hit_ratio
        if belady - lru <= 1e-12:
            return None
        return (self.get(policy, capacity_tokens).token_hit_ratio - lru) / (belady - lru)

    def to_json(self) -> dict[str, Any]:
        gaps = {
            p: {str(c): _round(self.gap_closed(p, c)) for c in self.capacities_tokens}
            for p in self.policies
            if p not in ("lru", "belady")
        }
        return {
            "trace": self.trace_name,
            "requests": self.num_requests,
            "block_tokens": self.block_tokens,
            "capacities_tokens": list(self.capacities_tokens),
            "policies": list(self.policies),
            "infinite": self.infinite.to_json(),
            "results": [r.to_json() for r in self.results],
            "lru_to_belady_gap_closed": gaps,
        }

    def table(self) -> str:
        """Token hit ratio (block hit ratio) per policy and capacity, then the gap closed vs lru."""
        head = f"{'policy':<10}" + "".join(f"{_fmt_tokens(c):>18}" for c in self.capacities_tokens)
        lines = [
            f"token hit ratio (block hit ratio); infinite cache: {self.infinite.token_hit_ratio:.4f}",
            head,
        ]
        for p in self.policies:
            cells = "".join(
                f"{self.get(p, c).token_hit_ratio:>9.4f} ({self.get(p, c).block_hit_ratio:.4f})"
                for c in self.capacities_tokens
            )
            lines.append(f"{p:<10}{cells}")
        if "lru" in self.policies and "belady" in self.policies:
            lines.append("share of the lru -> belady gap closed")
            for p in self.policies:
                if p in ("lru", "belady"):
                    continue
                cells = "".join(f"{_fmt_share(self.gap_closed(p, c)):>18}" for c in self.capacities_tokens)
                lines.append(f"{p:<10}{cells}")
        return "\n".join(lines)


_TRACE: Trace | None = None


def _run_one(task: tuple[str, int, PolicyConfig, ServiceModel, float | None]) -> SimResult:
    name, capacity_blocks, config, service, score_from_s = task
    assert _TRACE is not None
    policy = policy_class(name, allow_oracle=True)(capacity_blocks, _TRACE.block_tokens, config)
    result = replay(_TRACE, policy, service, score_from_s)
    policy.check_integrity()
    return result


def run_grid(
    trace: Trace,
    trace_name: str,
    capacities_tokens: tuple[int, ...],
    policies: tuple[str, ...],
    config: PolicyConfig | None = None,
    service: ServiceModel | None = None,
    jobs: int = 1,
    score_from_s: float | None = None,
) -> GridResult:
    """Replay ``trace`` for every pair; ``jobs`` > 1 spreads the pairs over forked processes.
    ``score_from_s``: score only the requests from this time on (``replay``)."""
    global _TRACE
    config, service = config or PolicyConfig(), service or ServiceModel()
    for c in capacities_tokens:
        if c < trace.block_tokens:
            raise GridInputError(f"capacity {c} tokens is below one {trace.block_tokens}-token block")
    tasks = [
        (p, c // trace.block_tokens, config, service, score_from_s)
        for p in policies
        for c in capacities_tokens
    ]
    _TRACE = trace
    try:
        if jobs > 1:
            with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
                results = list(pool.map(_run_one, tasks))
        else:
            results = [_run_one(t) for t in tasks]
    finally:
        _TRACE = None
    infinite = replay(trace, None, service, score_from_s)
    return GridResult(
        trace_name, len(trace), trace.block_tokens, capacities_tokens, policies, tuple(results), infinite
    )


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _fmt_share(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _fmt_tokens(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)
