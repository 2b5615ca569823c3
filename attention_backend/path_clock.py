"""GPU time of a span of stream work, read later without a host sync (the CUDA adapter's timed paths,
:mod:`attention_backend.layer_gate`).

A span is two CUDA events recorded on the current stream around the work; its time is read once the second
event has completed (``Event.query``, which never waits), on a later call. Events are reused. The time is
stream time between the two records: kernels, and the gaps where the GPU waited for the host inside the span
(a host sync in the span shows there), so it is what the span costs the step.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch


class PathClock:
    """Times spans (``start`` / ``stop``) tagged with any ``key``; ``done()`` returns the finished ones."""

    def __init__(self, most_pending: int = 64) -> None:
        self._free: list[tuple[Any, Any]] = []
        self._pending: deque[tuple[Any, Any, Any]] = deque()
        self._most_pending = most_pending

    def start(self) -> tuple[Any, Any, bool]:
        """A span begins here: ``(begin, end, idle)``, ``idle`` being whether the stream had nothing left to run
        (asked before the begin event is recorded, so the record itself cannot race the answer)."""
        begin, end = self._free.pop() if self._free else (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
        idle = bool(torch.cuda.current_stream().query())
        begin.record()
        return begin, end, idle

    @staticmethod
    def idle(span: tuple[Any, Any, bool]) -> bool:
        """Whether the span began on an idle stream: its time then includes the host launching its work. No wait."""
        return span[2]

    def stop(self, span: tuple[Any, Any, bool], key: Any) -> None:
        span[1].record()
        self._pending.append((span[0], span[1], key))
        if len(self._pending) > self._most_pending:  # never read (a stalled reader): drop the oldest
            begin, end, _ = self._pending.popleft()
            self._free.append((begin, end))

    def done(self) -> list[tuple[Any, float]]:
        """``(key, ms)`` of every span whose end has completed, oldest first; no wait."""
        out = []
        while self._pending and self._pending[0][1].query():
            begin, end, key = self._pending.popleft()
            out.append((key, begin.elapsed_time(end)))
            self._free.append((begin, end))
        return out
