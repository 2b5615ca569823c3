"""Pins with a TTL, bounded by a block budget: the policies' way to keep system prompts cached."""

from __future__ import annotations

import heapq


class PinSet:
    """Blocks pinned until an expiry time. A pin is refused (``pin`` returns False) once ``max_blocks``
    blocks hold pins; re-pinning a pinned block only extends it. ``expired(now)`` pops the blocks whose
    pin ended, in expiry order, in O(expired * log n) (a heap with lazy deletion)."""

    def __init__(self, max_blocks: int) -> None:
        if max_blocks < 0:
            raise ValueError(f"max_blocks must be >= 0, got {max_blocks}")
        self.max_blocks = max_blocks
        self._until: dict[int, float] = {}
        self._heap: list[tuple[float, int]] = []

    def pin(self, block: int, until: float) -> bool:
        current = self._until.get(block)
        if current is None and len(self._until) >= self.max_blocks:
            return False
        if current is None or until > current:
            self._until[block] = until
            heapq.heappush(self._heap, (until, block))
            if len(self._heap) > 2 * len(self._until) + 1024:
                self._heap = [(t, b) for b, t in self._until.items()]
                heapq.heapify(self._heap)
        return True

    def active(self, block: int, now: float) -> bool:
        until = self._until.get(block)
        return until is not None and until > now

    def unpin(self, block: int) -> None:
        self._until.pop(block, None)

    def expired(self, now: float) -> list[int]:
        out = []
        heap, until = self._heap, self._until
        while heap and heap[0][0] <= now:
            t, block = heapq.heappop(heap)
            if until.get(block) == t:
                del until[block]
                out.append(block)
        return out

    def __contains__(self, block: int) -> bool:
        return block in self._until

    def __len__(self) -> int:
        return len(self._until)
