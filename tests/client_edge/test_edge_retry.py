from __future__ import annotations

import random

import httpx
import pytest

from client_edge.retry import RetryPolicy, is_retryable_status, retry_after_s


def test_backoff_grows_exponentially_within_jitter_and_cap() -> None:
    p = RetryPolicy(max_retries=6, initial_delay_s=0.5, max_delay_s=4.0, jitter=0.5)
    rng = random.Random(1)
    for i in range(6):
        d = p.delay_s(i, rng)
        base = min(0.5 * 2**i, 4.0)
        assert 0.5 * base <= d <= base


def test_retry_after_wins_when_within_cap() -> None:
    p = RetryPolicy()
    assert p.delay_s(0, random.Random(0), retry_after_s=1.5) == 1.5
    assert p.delay_s(0, random.Random(0), retry_after_s=100.0) <= p.initial_delay_s


def test_retryable_statuses() -> None:
    assert all(is_retryable_status(s) for s in (408, 429, 500, 502, 503, 504))
    assert not any(is_retryable_status(s) for s in (400, 401, 404, 409, 413, 422))


def test_retry_after_header_parsing() -> None:
    req = httpx.Request("GET", "http://x")
    assert retry_after_s(httpx.Response(429, headers={"retry-after": "2"}, request=req)) == 2.0
    assert retry_after_s(httpx.Response(429, headers={"retry-after": "garbage"}, request=req)) is None
    assert retry_after_s(httpx.Response(429, request=req)) is None


def test_retry_after_date_is_gmt_whatever_the_local_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    """An HTTP date with ``-0000`` parses naive; read as local time it was hours off east or west of GMT."""
    import email.utils
    import time

    req = httpx.Request("GET", "http://x")
    when = email.utils.formatdate(time.time() + 30, usegmt=True).replace("GMT", "-0000")
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    try:
        wait = retry_after_s(httpx.Response(503, headers={"retry-after": when}, request=req))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert wait is not None and 25 <= wait <= 31


@pytest.mark.parametrize(
    "kw",
    [{"max_retries": -1}, {"initial_delay_s": 0}, {"jitter": 1.5}, {"initial_delay_s": 5, "max_delay_s": 1}],
)
def test_bad_policy_rejected(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kw)
