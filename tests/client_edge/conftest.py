from __future__ import annotations

import httpx
import pytest

from client_edge.client import EdgeClient
from tests.fakes.edge_cloud import FAST_RETRY, FakeCloud
from tests.fakes.edge_runner import FakeRunner


@pytest.fixture
def runner() -> FakeRunner:
    return FakeRunner()


@pytest.fixture
def cloud(runner: FakeRunner) -> FakeCloud:
    return FakeCloud(runner.tokenizer_fingerprint)


@pytest.fixture
def client(cloud: FakeCloud) -> EdgeClient:
    return EdgeClient(
        "http://cloud", retry=FAST_RETRY, http_client=httpx.Client(transport=cloud.transport()), seed=0
    )
