"""The real Docker engine for tests/deploy/test_docker_stack.py: engine detection (skip with the reason),
the compose binary on a test project, and a local pip index for the CPU torch wheel where PyTorch's CPU
index cannot be reached (served on 127.0.0.1; the cpu image is then built with the host network)."""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.compose_helpers import COMPOSE, DEPLOY, ENV_EXAMPLE, compose_binary

REPO = DEPLOY.parent
LOCK = REPO / "scripts" / "constraints-cpu.txt"
ENGINE_SCRIPT = "../shared/docker/offline_engine.sh"


def docker_or_skip() -> str:
    """The docker CLI, when an engine answers; otherwise skip, saying why and how to start one."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no Docker engine: the docker CLI is not installed")
    done = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=30)
    if done.returncode != 0 or not done.stdout.strip():
        pytest.skip(f"no Docker engine answers `docker info` ({done.stderr.strip()[:200]}); start one with {ENGINE_SCRIPT}")
    return docker


def run(argv: Sequence[str], *, env: dict[str, str] | None = None, timeout: float, input: str | None = None) -> str:
    """Run a command; on failure fail the test with its output's tail."""
    done = subprocess.run(list(argv), capture_output=True, text=True, env=env, timeout=timeout, input=input, cwd=REPO)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(argv[:6])} ... exited {done.returncode}:\n{(done.stdout + done.stderr)[-4000:]}")
    return done.stdout


def require_disk(docker: str, gib: float) -> None:
    """Fail, saying where and how much, when the engine's data root has less than ``gib`` GiB free: an image
    build that runs out of disk fails deep inside pip with ENOSPC, which reads like a packaging bug."""
    root = run([docker, "info", "--format", "{{.DockerRootDir}}"], timeout=30).strip()
    free = shutil.disk_usage(root).free / 2**30
    if free < gib:
        pytest.fail(f"the Docker engine's data root {root} has {free:.1f} GiB free; building deploy/ needs about {gib:g} GiB "
                    "(free some: `docker image prune`, or remove old xedge-* images)")  # fmt: skip


def image_ids(docker: str, tags: Sequence[str]) -> dict[str, str]:
    """The image id behind each tag that exists now."""
    ids = {}
    for tag in tags:
        done = subprocess.run([docker, "image", "inspect", "--format", "{{.Id}}", tag], capture_output=True, text=True, timeout=60)
        if done.returncode == 0:
            ids[tag] = done.stdout.strip()
    return ids


def remove_superseded(docker: str, before: dict[str, str]) -> list[str]:
    """Remove the images that ``before``'s tags pointed at and no longer do (a rebuild re-tags and leaves the old
    image dangling: about 4 GB per CPU image per run). Children first: pass tags in build order (removing a child
    also removes the untagged parents it alone used). Returns the superseded ids that are gone; one still used
    by a container, or by an image outside ``before``, is kept (docker refuses, and that is right)."""
    now = image_ids(docker, list(before))
    superseded = [before[tag] for tag in reversed(list(before)) if now.get(tag) != before[tag]]
    for old in superseded:
        subprocess.run([docker, "rmi", old], capture_output=True, text=True, timeout=300)
    return [old for old in superseded if not image_ids(docker, [old])]


class Timer:
    """Wall-clock seconds per phase, printed at the end (the CI budget is tracked from these)."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = round(time.monotonic() - t0, 1)
            print(f"[docker stack] {name}: {self.phases[name]} s", file=sys.stderr, flush=True)


class ComposeProject:
    """`docker compose -p <project> -f deploy/compose.yml --env-file deploy/.env.example` with a variable set."""

    def __init__(self, project: str, env: dict[str, str]) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("XEDGE_", "COMPOSE_"))}
        self.project, self.env = project, {**clean, **env}

    def __call__(self, *args: str, timeout: float = 600) -> str:
        argv = [*compose_binary(), "-p", self.project, "-f", str(COMPOSE), "--env-file", str(ENV_EXAMPLE), *args]
        return run(argv, env=self.env, timeout=timeout)

    def containers(self, docker: str) -> list[dict[str, Any]]:
        """`docker inspect` of every container of the project, running or not."""
        ids = run([docker, "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}"], timeout=60).split()
        return json.loads(run([docker, "inspect", *ids], timeout=60)) if ids else []

    def leftovers(self, docker: str) -> dict[str, list[str]]:
        """Containers, networks and volumes still labelled with the project."""
        label = f"label=com.docker.compose.project={self.project}"
        return {
            "containers": run([docker, "ps", "-aq", "--filter", label], timeout=60).split(),
            "networks": run([docker, "network", "ls", "-q", "--filter", label], timeout=60).split(),
            "volumes": run([docker, "volume", "ls", "-q", "--filter", label], timeout=60).split(),
        }


def locked_torch() -> str:
    """The lock's torch version, e.g. ``2.13.0+cpu``."""
    m = re.search(r"^torch==(\S+)$", LOCK.read_text(), flags=re.M)
    assert m, f"{LOCK} pins no torch"
    return m.group(1)


def local_torch_wheel() -> Path | None:
    """The lock's CPU torch wheel for the images' Python (3.11) in a folder pip is configured to find
    links in (`pip config list`: find-links), if any."""
    done = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60)
    dirs = [d for m in re.finditer(r"find-links='([^']*)'", done.stdout) for d in m.group(1).split()]
    name = f"torch-{locked_torch()}-cp311-cp311-"
    for d in dirs:
        path = Path(d.removeprefix("file://"))
        if path.is_dir():
            wheels = sorted(path.glob(f"{name}*x86_64.whl"))
            if wheels:
                return wheels[0]
    return None


@contextmanager
def torch_index(root: Path) -> Iterator[tuple[str | None, bool]]:
    """(TORCH_INDEX_URL, needs the host network) for the cpu image build: $XEDGE_TORCH_INDEX_URL if set;
    else a local copy of the wheel served on 127.0.0.1 as a pip index; else None (the Dockerfile's
    default, PyTorch's CPU index)."""
    if os.environ.get("XEDGE_TORCH_INDEX_URL"):
        yield os.environ["XEDGE_TORCH_INDEX_URL"], False
        return
    wheel = local_torch_wheel()
    if wheel is None:
        yield None, False
        return
    (root / "torch").mkdir(parents=True, exist_ok=True)
    link = root / "torch" / wheel.name
    if not link.exists():
        link.symlink_to(wheel)
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", True
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass
