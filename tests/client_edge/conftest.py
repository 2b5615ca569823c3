from __future__ import annotations

import pytest

from client_edge.client import EdgeClient
from client_edge.retry import RetryPolicy
from tests.client_edge.fake_cloud import FakeCloud
from tests.client_edge.fake_runner import FakeRunner

# Retries in tests back off for microseconds: the policy is tested on its own in test_retry.py.
FAST_RETRY = RetryPolicy(max_retries=2, initial_delay_s=1e-4, max_delay_s=1e-3)


@pytest.fixture
def runner() -> FakeRunner:
    return FakeRunner()


@pytest.fixture
def cloud(runner: FakeRunner) -> FakeCloud:
    return FakeCloud(runner.tokenizer_fingerprint)


@pytest.fixture
def client(cloud: FakeCloud) -> EdgeClient:
    import httpx

    return EdgeClient(
        "http://cloud", retry=FAST_RETRY, http_client=httpx.Client(transport=cloud.transport()), seed=0
    )
