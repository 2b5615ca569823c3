"""The host tier's index: which vLLM block hash lives in which of ``capacity`` host slots (pure Python).

The scheduler side of the connector owns it; the worker side only copies bytes between the slots and vLLM's
KV blocks as the per-step metadata says. Which slot gives way when the tier is full is decided by an
``EvictionPolicy`` (``server.engine.prefix_cache.policy``: the same contract and the same policies as vLLM's
own cache, over slot ids instead of block ids), so a session-aware policy keeps the blocks of the sessions
due next in the tier too. A slot is "in use" for the policy only while this step loads from it: loads run
before the forward and saves after it, so a save of the same step never takes a slot being loaded.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from client_edge.protocol.engine_xargs import RequestMeta
from server.engine.prefix_cache.policy import EvictionPolicy


@dataclass
class TierCounters:
    """What the tier did since start-up (the ``kv_tier.stats`` marker)."""

    lookups: int = 0  # requests asked about
    hit_blocks: int = 0  # blocks loaded back instead of computed
    saved_blocks: int = 0  # blocks copied out
    evicted_blocks: int = 0  # hashes dropped to make room
    skipped_saves: int = 0  # saves dropped because every slot was being loaded this step


class SlotIndex:
    """``policy.capacity_blocks`` host slots, each holding one block hash; ``policy`` picks the victims."""

    def __init__(self, policy: EvictionPolicy) -> None:
        self.policy = policy
        self.capacity = policy.capacity_blocks
        self._slot_of: dict[Hashable, int] = {}
        self._hash_of: dict[int, Hashable] = {}
        self._free = list(range(self.capacity - 1, -1, -1))
        self._loading: dict[int, RequestMeta] = {}  # slot -> meta of the request loading it this step
        self.counters = TierCounters()

    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, h: Hashable) -> bool:
        return h in self._slot_of

    def run_length(self, hashes: Sequence[Hashable]) -> int:
        """How many of ``hashes``, from the first, are held (a prefix loads only as an unbroken run)."""
        n = 0
        for h in hashes:
            if h not in self._slot_of:
                break
            n += 1
        return n

    def load(self, h: Hashable, meta: RequestMeta, now: float) -> int:
        """The slot of a held hash that this step loads: a hit for the policy, in use until :meth:`end_step`."""
        slot = self._slot_of[h]
        if slot not in self._loading:
            self.policy.on_hit(slot, meta, now)
            self._loading[slot] = meta
        self.counters.hit_blocks += 1
        return slot

    def save(self, h: Hashable, offset: int, meta: RequestMeta, now: float) -> int | None:
        """A slot to copy block ``offset`` of a request (``meta``) into, or None: when the hash is held already
        (no copy; it counts as a use) or every slot is being loaded this step (the save is skipped)."""
        held = self._slot_of.get(h)
        if held is not None:
            if held not in self._loading:
                self.policy.on_hit(held, meta, now)
                self.policy.on_freed(held, meta, now)
            return None
        if self._free:
            slot = self._free.pop()
        elif len(self.policy):
            (slot,) = self.policy.evict(1, now)
            del self._slot_of[self._hash_of.pop(slot)]
            self.counters.evicted_blocks += 1
        else:
            self.counters.skipped_saves += 1
            return None
        self._slot_of[h], self._hash_of[slot] = slot, h
        self.policy.on_cached(slot, offset, meta, now, hash(h))
        self.policy.on_freed(slot, meta, now)
        self.counters.saved_blocks += 1
        return slot

    def end_step(self, now: float) -> None:
        """This step's loads are done: their slots are candidates again."""
        for slot, meta in self._loading.items():
            self.policy.on_freed(slot, meta, now)
        self._loading.clear()

    def check_integrity(self) -> None:
        assert len(self._slot_of) == len(self._hash_of) == self.policy.num_cached()
        assert len(self._slot_of) + len(self._free) == self.capacity
        assert all(self._slot_of[h] == s for s, h in self._hash_of.items())
        self.policy.check_integrity()
