"""Issue 16, must-have 4: schemathesis over the OpenAPI schema with keys, 0 server errors, 0 hangs and the
conformance checks passing (tests/reliability/schema_fuzz.py). A short run in the default suite; the long
one is marked slow: ``pytest -m slow tests/reliability/test_schemathesis.py``."""

from __future__ import annotations

import pytest

from tests.reliability.schema_fuzz import fuzz, keyed_router


def _check(max_examples: int) -> None:
    with keyed_router() as url:
        report = fuzz(url, max_examples)
    print(f"schemathesis: {report.requests} requests, {len(report.failures)} failing operations")
    assert report.requests > 0
    assert not report.failures, "\n".join(f"{op}: {sorted(msgs)[:3]}" for op, msgs in report.failures.items())


def test_schemathesis_short() -> None:
    _check(max_examples=15)


@pytest.mark.slow
def test_schemathesis_long() -> None:
    _check(max_examples=400)
