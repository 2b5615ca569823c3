"""Bounded retries with exponential backoff and full jitter (the openai-python policy).

Only failures that a retry can fix are retried: connection errors, timeouts, 408, 429 and 5xx. A 409 is
never retried here: it means the edge and the cloud disagree about the committed prefix, which the
session resolves by resyncing. Retries are safe because every mutating request carries an idempotency key.
"""

from __future__ import annotations

import datetime
import email.utils
import random
import time
from dataclasses import dataclass

import httpx

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """``max_retries`` extra attempts after the first; delay before retry i (0-based) is drawn uniformly
    from ``[(1 - jitter) * d, d]`` with ``d = min(initial_delay_s * 2**i, max_delay_s)``."""

    max_retries: int = 2
    initial_delay_s: float = 0.25
    max_delay_s: float = 4.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if not 0 < self.initial_delay_s <= self.max_delay_s:
            raise ValueError(
                f"need 0 < initial_delay_s <= max_delay_s, got {self.initial_delay_s}, {self.max_delay_s}"
            )
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be in [0, 1], got {self.jitter}")

    def delay_s(self, retry_index: int, rng: random.Random, retry_after_s: float | None = None) -> float:
        """Seconds to wait before retry ``retry_index``; a server's Retry-After (capped) wins."""
        if retry_after_s is not None and 0 <= retry_after_s <= self.max_delay_s:
            return retry_after_s
        base = min(self.initial_delay_s * (2**retry_index), self.max_delay_s)
        return base * (1.0 - self.jitter * rng.random())


def is_retryable_status(status_code: int) -> bool:
    return status_code in RETRYABLE_STATUS


def retry_after_s(response: httpx.Response) -> float | None:
    """Parse ``Retry-After`` (seconds or an HTTP date); None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:  # "-0000" parses naive; an HTTP date is GMT, never this machine's local time
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, parsed.timestamp() - time.time())
