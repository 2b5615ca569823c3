"""The host tier's index: which vLLM block hash lives in which of ``capacity`` host slots (pure Python).

The scheduler side of the connector owns it; the worker side only copies bytes between the slots and vLLM's
KV blocks as the per-step metadata says. Which slot gives way when the tier is full is decided by an
``EvictionPolicy`` (``server.engine.prefix_cache.policy``: the same contract and the same policies as vLLM's
own cache, over slot ids instead of block ids), fed the way vLLM's pool feeds it: a slot a request loads or
saves is in use by that request (``on_hit`` / ``on_cached``) until the request finishes (``on_freed``), so
a session-aware policy sees one request per escalation and keeps the sessions due next; a slot in use is
never a victim (so a save never takes a slot that a load of the same step reads).
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
    skipped_saves: int = 0  # saves dropped because every slot was in use by running requests


class SlotIndex:
    """``policy.capacity_blocks`` host slots, each holding one block hash; ``policy`` picks the victims."""

    def __init__(self, policy: EvictionPolicy) -> None:
        self.policy = policy
        self.capacity = policy.capacity_blocks
        self._slot_of: dict[Hashable, int] = {}
        self._hash_of: dict[int, Hashable] = {}
        self._free = list(range(self.capacity - 1, -1, -1))
        self._users: dict[int, int] = {}  # slot in use -> how many running requests use it
        self._used_by: dict[str, tuple[RequestMeta, set[int]]] = {}  # running request -> its meta, its slots
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

    def load(self, h: Hashable, request: str, meta: RequestMeta, now: float) -> int:
        """The slot of a held hash that ``request`` loads now (a hit)."""
        slot = self._slot_of[h]
        self._use(slot, request, meta, now)
        self.counters.hit_blocks += 1
        return slot

    def save(self, h: Hashable, offset: int, request: str, meta: RequestMeta, now: float) -> int | None:
        """A slot to copy block ``offset`` of ``request`` into, or None: when the hash is held already (no copy;
        the request uses it) or every slot is in use (the save is skipped)."""
        held = self._slot_of.get(h)
        if held is not None:
            self._use(held, request, meta, now)
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
        self._users[slot] = 1
        self._used_by.setdefault(request, (meta, set()))[1].add(slot)
        self.counters.saved_blocks += 1
        return slot

    def finish(self, request: str, now: float) -> None:
        """``request`` ended: the slots no running request uses any more become candidates."""
        meta, slots = self._used_by.pop(request, (None, set()))
        for slot in slots:
            self._users[slot] -= 1
            if not self._users[slot]:
                del self._users[slot]
                self.policy.on_freed(slot, meta, now)

    def _use(self, slot: int, request: str, meta: RequestMeta, now: float) -> None:
        meta_slots = self._used_by.setdefault(request, (meta, set()))[1]
        if slot in meta_slots:
            return
        meta_slots.add(slot)
        self._users[slot] = self._users.get(slot, 0) + 1
        self.policy.on_hit(slot, meta, now)

    def check_integrity(self) -> None:
        assert len(self._slot_of) == len(self._hash_of) == self.policy.num_cached()
        assert len(self._slot_of) + len(self._free) == self.capacity
        assert all(self._slot_of[h] == s for s, h in self._hash_of.items())
        assert sum(self._users.values()) == sum(len(s) for _, s in self._used_by.values())
        assert len(self.policy) == len(self._slot_of) - len(self._users)  # candidates: held and not in use
        self.policy.check_integrity()
