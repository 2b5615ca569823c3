"""`xedge up`'s pieces without vLLM: the compose file as Docker Compose resolves it, the loopback rewrite of the router's settings,
the cloud container's command (same vLLM flags as `xedge serve`), its healthcheck, and the dry run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from server.cli import _load_commands, app
from server.launch.cloud_entry import cloud_command
from server.launch.compose.launcher import ComposeStack
from server.launch.compose.resolve import ComposeError
from server.launch.compose.topology import load_topology
from server.launch.healthcheck import check
from tests.deploy.compose_helpers import COMPOSE, ENV_EXAMPLE, SECRETS
from tests.fakes.loopback import serve
from tests.fakes.vllm_server import make_fake_vllm

MINI = """
services:
  vllm:
    profiles: [p]
    image: x
    labels: {xedge.role: cloud}
    environment:
      XEDGE_STATUS_DIR: /run/s/status
      NESTED: ${UNSET:-${A}x}
      EMPTY_DEFAULT: ${E:-d}
      EMPTY_KEPT: ${E-d}
      ALT: ${A:+alt}
      LITERAL: $$A
    volumes: [st:/run/s, ./models:/models:ro]
  gate:
    profiles: [p]
    image: x
    labels: {xedge.role: router}
    environment: [XEDGE_ROUTER_VLLM_URLS=http://vllm:8000, "K=${K:?set K please}"]
    ports: ["127.0.0.1:${PORT:-9999}:8080"]
    depends_on: {vllm: {condition: service_healthy}}
  other:
    image: x
    profiles: [q]
    labels: {xedge.role: router}
volumes: {st: {}}
"""


def test_compose_resolves_env_file_interpolation_and_profiles(tmp_path: Path) -> None:
    """`xedge up` takes the file as Docker Compose resolves it: .env next to the file, shell over .env,
    nested defaults, `$$`, list-form environment, relative binds, profiles."""
    (tmp_path / "compose.yml").write_text(MINI)
    (tmp_path / ".env").write_text("A=from-file\nE=\nK=k-file\n")
    topo = load_topology(tmp_path / "compose.yml", ("p",), environ={"K": "k-shell", "PORT": "7777"})
    (cloud,) = topo.clouds
    assert dict(cloud.environment) == {"XEDGE_STATUS_DIR": "/run/s/status", "NESTED": "from-filex", "EMPTY_DEFAULT": "d",
                                       "EMPTY_KEPT": "", "ALT": "alt", "LITERAL": "$A"}  # fmt: skip
    assert topo.router.name == "gate" and topo.router.environment["K"] == "k-shell"
    assert topo.router.published_ports == {8080: 7777} and topo.router.depends_on["vllm"]["condition"] == "service_healthy"
    bind = next(m for m in cloud.mounts if m.target == "/models")
    assert (bind.kind, bind.source, bind.read_only) == ("bind", str(tmp_path / "models"), True)
    assert cloud.host_path("/run/s/status", tmp_path / "v", tmp_path) == tmp_path / "v" / "st" / "status"
    with pytest.raises(ComposeError, match="missing-k.env does not exist"):
        load_topology(tmp_path / "compose.yml", ("p",), env_file=tmp_path / "missing-k.env", environ={"A": "a"})
    (tmp_path / "missing-k.env").write_text("A=1\n")
    with pytest.raises(ComposeError, match="required variable K is missing a value: set K please"):
        load_topology(tmp_path / "compose.yml", ("p",), env_file=tmp_path / "missing-k.env", environ={})
    with pytest.raises(ComposeError, match="exactly one labelled router, got clouds .'vllm'., routers .'gate', 'other'."):
        load_topology(tmp_path / "compose.yml", ("p", "q"), environ={"K": "k"})


def test_process_environment_wins_over_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "vars"
    env_file.write_text(ENV_EXAMPLE.read_text() + "XEDGE_RATE_LIMIT_RPS=3\nXEDGE_API_KEYS=a:sk-file-000000000000000\n")
    topo = load_topology(COMPOSE, ("cpu",), env_file=env_file, environ=SECRETS)
    env = topo.router.environment
    assert env["XEDGE_ROUTER_RATE_LIMIT_RPS"] == "3" and env["XEDGE_ROUTER_API_KEYS"] == SECRETS["XEDGE_API_KEYS"]


def test_router_settings_are_rewritten_to_loopback(tmp_path: Path) -> None:
    topo = load_topology(COMPOSE, ("cpu",), env_file=ENV_EXAMPLE, environ=SECRETS)
    up = ComposeStack(topo, tmp_path, router_port=0)
    up.urls = {"cloud-cpu": "http://127.0.0.1:4321"}
    env = up.router_env()
    assert env["XEDGE_ROUTER_VLLM_URLS"] == "http://127.0.0.1:4321"
    assert env["XEDGE_ROUTER_HOST"] == "127.0.0.1" and int(env["XEDGE_ROUTER_PORT"]) > 0
    assert env["XEDGE_ROUTER_STATUS_DIR"] == str(tmp_path / "volumes" / "xedge-status")
    # The cloud's plugin markers land where the router reads them (same named volume).
    cloud = up.cloud_settings(topo.clouds[0])
    assert cloud.run_dir == tmp_path / "volumes" / "xedge-status" / "cloud-cpu"
    assert (cloud.device, cloud.kv_cache_gib, cloud.max_model_len, cloud.router) == ("cpu", 2.0, 8192, False)
    up.urls = {}
    with pytest.raises(ComposeError, match="'cloud-cpu', not an active cloud service"):
        up.router_env()


def test_gpu_model_path_maps_through_the_bind_mount(tmp_path: Path) -> None:
    env = {**SECRETS, "XEDGE_MODELS_DIR": str(tmp_path / "models"), "XEDGE_MODEL": "M"}
    topo = load_topology(COMPOSE, ("gpu",), env_file=ENV_EXAMPLE, environ=env)
    settings = ComposeStack(topo, tmp_path / "run").cloud_settings(topo.clouds[0])
    assert settings.model == str(tmp_path / "models" / "M") and settings.device == "cuda"
    assert settings.served_model_name == "M" and settings.max_model_len == 32768


def test_cloud_container_runs_vllm_with_our_plugins(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    environ = {"XEDGE_MODEL": str(model), "XEDGE_DEVICE": "cpu", "XEDGE_STATUS_DIR": str(tmp_path / "st"),
               "XEDGE_VLLM_ARGS": json.dumps(["--seed", "1"]), "XEDGE_MAX_MODEL_LEN": "512",
               "XEDGE_ROUTER_API_KEYS": "acme:0123456789abcdefXYZ"}  # fmt: skip
    argv, env, status = cloud_command(environ)
    assert "XEDGE_ROUTER_API_KEYS" not in env and env["XEDGE_MODEL"] == str(model)  # vLLM never sees the router's keys
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    flags = dict(zip(argv[3::1], argv[4::1], strict=False))
    assert flags["--host"] == "0.0.0.0" and flags["--port"] == "8000" and flags["--max-model-len"] == "512"
    assert "--enable-prompt-tokens-details" in argv and "--enable-prefix-caching" in argv and argv[-2:] == ["--seed", "1"]
    assert env["VLLM_PLUGINS"] == "xedge_attention,xedge_prefix_cache" and env["XEDGE_STATUS_DIR"] == str(status)
    with pytest.raises(SystemExit, match="XEDGE_STATUS_DIR"):
        cloud_command({"XEDGE_DEVICE": "cpu"})


def test_cloud_healthcheck_needs_health_and_plugin_markers(tmp_path: Path) -> None:
    with serve(make_fake_vllm()) as url:
        port = int(url.rsplit(":", 1)[1])
        assert "missing markers: attention.impl, prefix_cache.block_pool" in (check(port, tmp_path) or "")
        for plugin, event in (("attention", "impl"), ("prefix_cache", "block_pool")):
            marker = {"plugin": plugin, "event": event, "pid": 1, "ppid": 0, "detail": {}}
            (tmp_path / f"{plugin}.{event}.1.json").write_text(json.dumps(marker))
        assert check(port, tmp_path) is None
    assert "unreachable" in (check(port, tmp_path) or "")


def test_xedge_up_dry_run_and_missing_values() -> None:
    _load_commands()
    runner = CliRunner()
    args = ["up", "--config", str(COMPOSE), "--env-file", str(ENV_EXAMPLE), "--profile", "cpu", "--dry-run"]
    done = runner.invoke(app, args, env=SECRETS)
    assert done.exit_code == 0, done.output
    assert "cloud  cloud-cpu: vLLM model=(packaged SmolLM2-135M-Instruct) device=cpu" in done.output
    assert "router router-cpu" in done.output and SECRETS["XEDGE_CACHE_SALT_SECRET"] not in done.output
    done = runner.invoke(app, args, env={"XEDGE_API_KEYS": "", "XEDGE_CACHE_SALT_SECRET": ""})
    assert done.exit_code == 2 and "required variable XEDGE_" in done.output and "is missing a value" in done.output
