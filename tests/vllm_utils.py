"""Helpers for tests that run the real stack: vLLM on CPU with our plugins (+ the router) on loopback.

    from tests.vllm_utils import start_stack
    with start_stack(tmp_path, router=False, prefix_cache_policy="workload", block_size=32) as stack:
        stack.vllm_url, stack.router_url, stack.status_dir, stack.model_dir, stack.served_model_name

Keyword arguments are `server.settings.StackSettings` fields. The stack is the one `xedge serve` starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from server.launch.stack import Stack
from server.settings import StackSettings


def start_stack(run_dir: Path, **overrides: Any) -> Stack:
    """A not-yet-started `Stack` on free loopback ports; use it as a context manager."""
    fields: dict[str, Any] = {"port": 0, "vllm_port": 0, "device": "cpu", "run_dir": run_dir, "kv_cache_gib": 0.5}
    fields.update(overrides)
    return Stack(StackSettings(**fields))
