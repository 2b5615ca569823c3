"""Emulated network delay: an httpx transport that waits one round-trip time before each exchange."""

from __future__ import annotations

import time

import httpx


class DelayTransport(httpx.BaseTransport):
    """Adds ``rtt_ms`` to every request (latency only; bandwidth is not modelled)."""

    def __init__(self, rtt_ms: float, inner: httpx.BaseTransport | None = None) -> None:
        if rtt_ms < 0:
            raise ValueError(f"rtt_ms must be >= 0, got {rtt_ms}")
        self.rtt_s = rtt_ms / 1000.0
        self.inner = inner if inner is not None else httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.rtt_s:
            time.sleep(self.rtt_s)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()
