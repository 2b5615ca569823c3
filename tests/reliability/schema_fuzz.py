"""Schemathesis over the router's own OpenAPI document, on real loopback HTTP with API keys: every
operation, schema-valid (positive) and schema-violating (negative) inputs, every conformance check
schemathesis has except ``positive_data_acceptance`` (a schema-valid body can still be refused by a
rule no schema states: an unknown session, a fingerprint or base mismatch are 4xx by design).

A request that takes longer than ``timeout_s`` counts as a hang."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from router.app import create_app
from router.operations import OperationsExtension
from router.settings import RouterSettings
from tests.fakes.engine import FakeEngine, FakeTokenizer
from tests.fakes.loopback import serve
from tests.fakes.vllm_server import make_fake_vllm

KEY = "sk-fuzz-0123456789abcdef"
EXCLUDED = [schemathesis.checks.positive_data_acceptance]


@dataclass
class FuzzReport:
    requests: int = 0
    failures: dict[str, set[str]] = field(default_factory=dict)


@contextmanager
def keyed_router() -> Iterator[str]:
    """The router with keys, the fake engine and a fake vLLM behind its OpenAI proxy, on loopback."""
    with ExitStack() as stack:
        fake_url = stack.enter_context(serve(make_fake_vllm()))
        # No failed-auth throttling here: negative cases send broken Authorization headers on purpose.
        s = RouterSettings(vllm_urls=[fake_url], startup_timeout_s=0, api_keys=f"acme:{KEY}",
                           auth_failure_burst=10**9, tenant_max_concurrent=10**6)  # fmt: skip
        tok = FakeTokenizer()
        app = create_app(s, engines=[FakeEngine(tok.vocab_size)], tokenizer=tok, extensions=[OperationsExtension(s)])
        yield stack.enter_context(serve(app))


def fuzz(url: str, max_examples: int, *, timeout_s: float = 10.0) -> FuzzReport:
    report = FuzzReport()
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    for result in schema.get_all_operations():
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            _fuzz_operation(result.ok(), mode, max_examples, timeout_s, report)
    report.failures = {label: msgs for label, msgs in report.failures.items() if msgs}
    return report


def _fuzz_operation(op: Any, mode: schemathesis.GenerationMode, max_examples: int, timeout_s: float,
                    report: FuzzReport) -> None:  # fmt: skip
    failures = report.failures.setdefault(f"{op.label} [{mode.value}]", set())

    @given(case=op.as_strategy(generation_mode=mode))
    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def run(case: Any) -> None:
        report.requests += 1
        try:
            case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"}, timeout=timeout_s,
                                   excluded_checks=EXCLUDED)  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - every failure is collected and reported
            failures.add(f"{type(exc).__name__}: {str(exc)[:400]}")

    # An operation without parameters or body has no negative input: hypothesis says Unsatisfiable.
    with contextlib.suppress(Unsatisfiable):
        run()
