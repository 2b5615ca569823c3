"""Suite-wide fixtures: GPU skipping and one real xedge stack (vLLM on CPU + router) shared by e2e tests.

Starting vLLM costs 60-130 s on 2 cores, so the default-configuration stack is started once per test
session (`xedge_stack`) and reused by every end-to-end test that does not need special vLLM flags.
Tests that need their own flags start a `Stack` themselves (see tests/vllm_utils.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.vllm_utils import start_stack


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _cuda_available() or os.environ.get("TRITON_INTERPRET") == "1":
        return  # under the Triton interpreter, GPU tests decide themselves (the kernel tests run on CPU)
    skip = pytest.mark.skip(reason="needs a CUDA GPU (marker `gpu`); this machine has none")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def xedge_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The default stack (`xedge serve` settings, packaged SmolLM2, policy lru), started once per session."""
    with start_stack(tmp_path_factory.mktemp("xedge-stack")) as stack:
        yield stack
