"""Session -> replica pinning by consistent hashing, so each edge session keeps its replica's prefix cache.

Adding or removing one replica moves only about 1/N of the sessions (virtual nodes smooth the split).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence


def _point(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")


class HashRing:
    """Consistent-hash ring over replica names (their base URLs); ``pick(key)`` returns an index."""

    def __init__(self, replicas: Sequence[str], *, vnodes: int = 64) -> None:
        if not replicas:
            raise ValueError("HashRing needs at least one replica")
        if len(set(replicas)) != len(replicas):
            raise ValueError(f"replica names must be unique, got {list(replicas)}")
        self.replicas = list(replicas)
        ring = sorted((_point(f"{name}#{v}"), i) for i, name in enumerate(self.replicas) for v in range(vnodes))
        self._points = [p for p, _ in ring]
        self._owners = [i for _, i in ring]

    def pick(self, key: str) -> int:
        """Index of the replica owning ``key`` (first ring point clockwise of the key's hash)."""
        at = bisect.bisect_right(self._points, _point(key)) % len(self._points)
        return self._owners[at]
