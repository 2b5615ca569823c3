"""deploy/compose.yml without a Docker engine: the real `docker compose config` (schema, interpolation,
profiles), cross-references (healthchecks, depends_on conditions, vLLM URLs, every ${VAR} documented in
.env.example), the Dockerfiles' layer order, and `xedge up`'s topology taken from compose's resolved model."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from server.launch.compose.resolve import ComposeError
from server.launch.compose.topology import load_topology
from tests.deploy.compose_helpers import (
    COMPOSE,
    DEPLOY,
    ENV_EXAMPLE,
    PROFILES,
    SECRETS,
    compose_config,
    compose_model,
    env_file_values,
)

VLLM_IMAGE = "vllm/vllm-openai:v0.26.0"
RAW = COMPOSE.read_text()


def _required() -> set[str]:
    return set(re.findall(r"\$\{([A-Z0-9_]+):\?", RAW))


def _example() -> tuple[dict[str, str], dict[str, str]]:
    """(set values, commented-out optional values) of .env.example."""
    set_values = env_file_values(ENV_EXAMPLE)
    optional = dict(re.findall(r"^# ([A-Z][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE.read_text(), flags=re.M))
    return set_values, optional


@pytest.mark.parametrize("profiles", PROFILES, ids=lambda p: "profiles=" + "+".join(p))
def test_docker_compose_accepts_every_profile(profiles: tuple[str, ...]) -> None:
    model = compose_model(profiles)
    roles = {n: s.get("labels", {}).get("xedge.role") for n, s in model["services"].items()}
    assert sorted(roles.values()).count("router") == 1 and "cloud" in roles.values(), roles


def test_required_values_fail_loudly_in_compose_and_xedge_up() -> None:
    assert _required() == {"XEDGE_API_KEYS", "XEDGE_CACHE_SALT_SECRET", "XEDGE_MODELS_DIR", "XEDGE_MODEL"}
    example, _ = _example()
    assert example["XEDGE_API_KEYS"] == "" and example["XEDGE_CACHE_SALT_SECRET"] == ""  # secrets never shipped
    for name in sorted(_required()):
        env = {**SECRETS, **{k: v for k, v in example.items() if v}, name: ""}
        done = compose_config(("cpu",), env)
        assert done.returncode != 0 and f"required variable {name} is missing a value" in done.stderr, done.stderr
        with pytest.raises(ComposeError, match=f"required variable {name} is missing a value"):
            load_topology(COMPOSE, ("cpu",), env_file=ENV_EXAMPLE, environ=env)


def test_every_variable_is_documented_in_env_example_with_its_default() -> None:
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", RAW))
    example, optional = _example()
    assert used == set(example) | set(optional), (used ^ (set(example) | set(optional)))
    defaults = dict(re.findall(r"\$\{([A-Z0-9_]+):-([^}]*)\}", RAW))
    for name, value in optional.items():
        assert defaults.get(name) == value, f".env.example says {name}={value}, compose.yml defaults to {defaults.get(name)}"


@pytest.mark.parametrize("profiles", PROFILES, ids=lambda p: "profiles=" + "+".join(p))
def test_healthchecks_and_depends_on(profiles: tuple[str, ...]) -> None:
    services = compose_model(profiles)["services"]
    clouds = {n for n, s in services.items() if s["labels"]["xedge.role"] == "cloud"}
    (router,) = (n for n, s in services.items() if s["labels"]["xedge.role"] == "router")
    for name, svc in services.items():
        test = svc["healthcheck"]["test"]
        assert test[0] == "CMD", (name, test)
        probe = " ".join(test)
        role = svc["labels"]["xedge.role"]  # the shared session store (profile scale) answers redis-cli ping
        want = {"cloud": "server.launch.healthcheck", "router": "/ready", "store": "redis-cli ping"}[role]
        assert want in probe, (name, probe)
    needs = {d for d, c in services[router]["depends_on"].items() if c.get("required", True)}
    assert needs and needs <= clouds
    for dep, cond in services[router]["depends_on"].items():
        assert cond["condition"] == "service_healthy", (dep, cond)
    urls = services[router]["environment"]["XEDGE_ROUTER_VLLM_URLS"].split(",")
    hosts = {re.match(r"http://([^:/]+):8000$", u).group(1) for u in urls}  # type: ignore[union-attr]
    assert hosts <= clouds and hosts <= set(services[router]["depends_on"])
    # Every replica writes its plugin markers into its own sub-directory of the volume the router reads.
    status = {services[c]["environment"]["XEDGE_STATUS_DIR"] for c in clouds}
    assert len(status) == len(clouds) and all(s == f"/run/xedge/{c}/status" for c, s in
                                              ((c, services[c]["environment"]["XEDGE_STATUS_DIR"]) for c in clouds))  # fmt: skip
    assert services[router]["environment"]["XEDGE_ROUTER_STATUS_DIR"] == "/run/xedge"


def test_gpu_replicas_reserve_distinct_gpus_and_mount_models_and_hf_cache() -> None:
    services = compose_model(("gpu", "scale"))["services"]
    seen = []
    for name in ("cloud", "cloud-1"):
        svc = services[name]
        (device,) = svc["deploy"]["resources"]["reservations"]["devices"]
        assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia"
        seen += device["device_ids"]
        targets = {v["target"]: v for v in svc["volumes"]}
        assert targets["/models"]["type"] == "bind" and targets["/models"]["read_only"] is True
        assert targets["/home/xedge/.cache/huggingface"]["type"] == "volume"
        assert svc["build"]["args"]["VLLM_IMAGE"] == VLLM_IMAGE
    assert len(set(seen)) == 2


def _instructions(dockerfile: Path) -> list[str]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


@pytest.mark.parametrize("name", ["Dockerfile.cloud", "Dockerfile.cpu", "Dockerfile.router"])
def test_dockerfiles_install_dependencies_in_their_own_cached_layer(name: str) -> None:
    lines = _instructions(DEPLOY / name)
    copy_deps = next(i for i, ln in enumerate(lines) if ln.startswith("COPY pyproject.toml"))
    install = next(i for i, ln in enumerate(lines) if ln.startswith("RUN") and "requirements.py" in ln)
    first_source = next(i for i, ln in enumerate(lines) if re.match(r"COPY (router|server|client_edge|attention_backend)\b", ln))
    assert copy_deps < install < first_source, lines
    # Pinned: the dependency layer installs with the lock as constraints (the cloud image through the
    # constraints that keep the vLLM image's own packages).
    assert "scripts/constraints-cpu.txt" in lines[copy_deps] and " -c " in lines[install], lines[install]
    # Non-root, and no BuildKit frontend to fetch (`# syntax=` makes builds fail offline).
    assert [ln for ln in lines if ln.startswith("USER ")][-1] == "USER xedge"
    assert "# syntax" not in (DEPLOY / name).read_text()


def test_build_context_never_sends_the_venv() -> None:
    """One root .dockerignore (the classic builder ignores per-Dockerfile ones): an allowlist."""
    assert not list(DEPLOY.glob("*.dockerignore"))
    rules = [ln for ln in (DEPLOY.parent / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert rules[0] == "*" and all(r.startswith("!") or r.startswith("**/") for r in rules[1:])
    sent = {r[1:] for r in rules if r.startswith("!")}
    copied = {src for name in ("Dockerfile.cloud", "Dockerfile.cpu", "Dockerfile.router")
              for ln in _instructions(DEPLOY / name) if ln.startswith("COPY ") for src in ln.split()[1:-1]}  # fmt: skip
    assert copied == sent, copied ^ sent


def test_cpu_image_torch_is_the_locked_one_and_has_shared_memory() -> None:
    locked = next(ln for ln in (DEPLOY.parent / "scripts/constraints-cpu.txt").read_text().splitlines() if ln.startswith("torch=="))
    torch_line = next(ln for ln in _instructions(DEPLOY / "Dockerfile.cpu") if "--index-url" in ln)
    assert f'"{locked}"' in torch_line and '"${TORCH_INDEX_URL}"' in torch_line
    services = compose_model(("cpu",))["services"]
    assert int(services["cloud-cpu"]["shm_size"]) >= 1 << 30
    assert services["cloud-cpu"]["build"]["args"]["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"


def test_cloud_image_is_the_official_vllm_image() -> None:
    lines = _instructions(DEPLOY / "Dockerfile.cloud")
    assert lines[0] == f"ARG VLLM_IMAGE={VLLM_IMAGE}" and lines[1] == "FROM ${VLLM_IMAGE}"
    assert any("pip install --no-deps ." in ln for ln in lines)  # never reinstalls vLLM / torch


def test_router_image_is_slim_without_torch() -> None:
    lines = _instructions(DEPLOY / "Dockerfile.router")
    assert re.fullmatch(r"FROM python:3\.\d+-slim", lines[0])
    assert not any(re.match(r"COPY (server|attention_backend)\b", ln) for ln in lines)
    reqs = subprocess.run([sys.executable, str(DEPLOY / "requirements.py"), str(DEPLOY.parent / "pyproject.toml"), "router"],
                          capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert not [r for r in reqs if re.match(r"(torch|vllm|triton)\b", r)], reqs
    # The router package imports without torch or vLLM.
    code = "import sys; sys.modules.update(torch=None, vllm=None); import router.__main__, router.operations"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=DEPLOY.parent)


@pytest.mark.parametrize("profiles", PROFILES, ids=lambda p: "profiles=" + "+".join(p))
def test_xedge_up_reads_the_file_as_compose_does(profiles: tuple[str, ...]) -> None:
    env = dict(SECRETS)
    if "scale" in profiles:
        env["XEDGE_CLOUD_URLS"] = "http://cloud:8000,http://cloud-1:8000"
    done = compose_config(profiles, env)
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    topo = load_topology(COMPOSE, profiles, env_file=ENV_EXAMPLE, environ=env)
    ours = {s.name: dict(s.environment) for s in (*topo.clouds, topo.router)}
    # xedge up starts the cloud replicas and the router; not the scale profile's session store (redis).
    theirs = {n: s["environment"] for n, s in services.items() if s["labels"]["xedge.role"] in ("cloud", "router")}
    assert ours == theirs
    assert [c.name for c in topo.clouds] == [n for n, s in services.items() if s["labels"]["xedge.role"] == "cloud"]
    assert len(topo.router.environment["XEDGE_ROUTER_VLLM_URLS"].split(",")) == len(topo.clouds)


def test_every_image_dependency_is_pinned_by_the_lock() -> None:
    """The Dockerfiles install with scripts/constraints-cpu.txt as constraints: each direct dependency they
    install (base, `router`, `cpu`, gguf, accelerate) must have a pin there, or the image would take whatever is newest."""
    lock = {re.sub(r"[-_.]+", "-", ln.split("==")[0]).lower()
            for ln in (DEPLOY.parent / "scripts/constraints-cpu.txt").read_text().splitlines() if "==" in ln}  # fmt: skip
    reqs = subprocess.run([sys.executable, str(DEPLOY / "requirements.py"), str(DEPLOY.parent / "pyproject.toml"), "router", "cpu"],
                          capture_output=True, text=True, check=True).stdout.split("\n") + ["gguf", "accelerate"]  # fmt: skip
    names = {re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", r).group(0)).lower() for r in reqs if r.strip()}  # type: ignore[union-attr]
    assert names and not names - lock, sorted(names - lock)
