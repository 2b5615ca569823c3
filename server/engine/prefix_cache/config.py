"""Typed, frozen settings shared by the eviction policies (each default written once, here)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PolicyConfig:
    """Knobs of the policies; every policy reads only the fields it needs.

    pin_share: the largest share of the cache that pinned blocks may hold (0 disables pinning).
    reuse_window: how many recent reuse gaps per category the ``workload`` policy fits lambda on.
    initial_life_s: the ``workload`` look-ahead window before any eviction measured one.
    life_smoothing: EWMA weight of each measured eviction age in the ``workload`` look-ahead window.
    ghost_factor / ghost_max_entries: how much evicted content ``workload`` remembers to observe reuses
        the cache missed (a multiple of the cache size, capped); too short a memory hides long reuse gaps.
    s3fifo_small_share: share of the cache given to S3-FIFO's probationary queue.
    density_horizon_s: the ``density`` policy's look-ahead: hit density counts reuses within this many
        more seconds of idleness, per block-second spent waiting for them.
    density_refresh / density_decay: ``density`` rebuilds its tables every ``density_refresh`` idle
        periods (block frees), then multiplies its counts by ``density_decay`` (1: never forget).
    guard_window: ``guarded`` compares its shadow caches over about this many cache capacities of block
        accesses (the decay of its score).
    guard_margin: the hit-ratio advantage (share of the window's accesses) that ``guarded``'s learned
        expert needs over LRU to take the lead; it doubles each time the learned expert loses the lead.
    guard_slack: ``guarded`` hands the pool back to LRU once the pool's hits fall behind its LRU shadow's
        by more than this share of the accesses so far.
    session_share: the largest share of the cache that ``session``'s protected edge sessions may hold.
    session_inner: the policy ``session`` uses for blocks it does not protect (no session, or none left).
    session_idle_factor: ``session`` takes protection from a session idle for more than this many mean
        gaps between a session's requests, and never from one idle for less than ``session_idle_min_s``
        (back-to-back requests, milliseconds apart, would otherwise make a pause of a moment look idle).
    """

    pin_share: float = 0.25
    reuse_window: int = 2000
    initial_life_s: float = 60.0
    life_smoothing: float = 0.01
    ghost_factor: int = 64
    ghost_max_entries: int = 1 << 20
    s3fifo_small_share: float = 0.1
    density_horizon_s: float = 200.0
    density_refresh: int = 2000
    density_decay: float = 0.995
    guard_window: float = 4.0
    guard_margin: float = 0.01
    guard_slack: float = 0.001
    session_share: float = 0.9
    session_inner: str = "lru"
    session_idle_factor: float = 2.0
    session_idle_min_s: float = 5.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.pin_share <= 1.0:
            raise ValueError(f"pin_share must be in [0, 1], got {self.pin_share}")
        if self.reuse_window < 1:
            raise ValueError(f"reuse_window must be >= 1, got {self.reuse_window}")
        if self.initial_life_s <= 0:
            raise ValueError(f"initial_life_s must be > 0, got {self.initial_life_s}")
        if not 0.0 < self.life_smoothing <= 1.0:
            raise ValueError(f"life_smoothing must be in (0, 1], got {self.life_smoothing}")
        if self.ghost_factor < 0 or self.ghost_max_entries < 0:
            raise ValueError(
                f"ghost_factor and ghost_max_entries must be >= 0, got {self.ghost_factor}, {self.ghost_max_entries}"
            )
        if not 0.0 < self.s3fifo_small_share < 1.0:
            raise ValueError(f"s3fifo_small_share must be in (0, 1), got {self.s3fifo_small_share}")
        if self.density_horizon_s <= 0 or self.density_refresh < 1 or not 0.0 < self.density_decay <= 1.0:
            raise ValueError(
                "density_horizon_s must be > 0, density_refresh >= 1 and density_decay in (0, 1], got "
                f"{self.density_horizon_s}, {self.density_refresh}, {self.density_decay}"
            )
        if not 0.0 <= self.session_share <= 1.0:
            raise ValueError(f"session_share must be in [0, 1], got {self.session_share}")
        if self.session_idle_factor <= 0 or self.session_idle_min_s < 0:
            raise ValueError(
                "session_idle_factor must be > 0 and session_idle_min_s >= 0, got "
                f"{self.session_idle_factor}, {self.session_idle_min_s}"
            )
        if self.session_inner == "session":
            raise ValueError("session_inner cannot be 'session' itself")
        if not 0.0 <= self.guard_slack < 1.0:
            raise ValueError(f"guard_slack must be in [0, 1), got {self.guard_slack}")
        if self.guard_window <= 0 or not 0.0 <= self.guard_margin < 1.0:
            raise ValueError(
                f"guard_window must be > 0 and guard_margin in [0, 1), got {self.guard_window}, {self.guard_margin}"
            )
