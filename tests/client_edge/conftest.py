from __future__ import annotations

from collections.abc import Iterator

import pytest

from client_edge.client import EdgeClient
from tests.client_edge.router_cloud import RouterCloud, router_cloud
from tests.fakes.edge_runner import FakeRunner


@pytest.fixture
def runner() -> FakeRunner:
    return FakeRunner()


@pytest.fixture
def cloud() -> Iterator[RouterCloud]:
    """The real router on loopback over the toy cloud model (token mode: the edge's tokenizer)."""
    with router_cloud() as c:
        yield c


@pytest.fixture
def client(cloud: RouterCloud) -> Iterator[EdgeClient]:
    with cloud.client() as c:
        yield c
