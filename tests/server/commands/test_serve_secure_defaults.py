"""`xedge serve`'s secure defaults (issue 16, finding 5): it refuses to listen beyond loopback without
API keys unless told to run open, says loudly when it runs open, and keys vLLM's local port and the
tenants' cache salts with secrets that are random per stack unless configured."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from server.commands.serve import register
from server.launch.vllm_cmd import vllm_auth_headers, vllm_env, with_stack_secrets
from server.settings import StackSettings

app = typer.Typer()
register(app)


@app.callback()
def _group() -> None:
    """A group, so that `serve` is invoked by name as under `xedge`."""


def test_serve_refuses_a_public_address_without_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XEDGE_ROUTER_API_KEYS", raising=False)
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "refusing to listen on 0.0.0.0 without API keys" in result.output and "--allow-open" in result.output


@pytest.mark.parametrize(
    ("args", "keys", "banner"),
    [
        (["--host", "0.0.0.0", "--allow-open"], "", True),  # open on purpose: allowed, and said loudly
        (["--host", "127.0.0.1"], "", True),  # loopback without keys: allowed, and said loudly
        (["--host", "0.0.0.0"], "acme:sk-0123456789abcdef", False),  # keyed: no banner
    ],
)
def test_serve_starts_when_allowed_and_warns_when_open(
    monkeypatch: pytest.MonkeyPatch, args: list[str], keys: str, banner: bool
) -> None:
    started: list[StackSettings] = []

    class _Stack:  # a stack that "starts" at once; records what it was given
        vllm_url, router_url, run_dir, served_model_name = "http://127.0.0.1:1", "http://0.0.0.0:8000", "/tmp", "m"

        def __init__(self, settings: StackSettings) -> None:
            started.append(settings)

        def start(self) -> None: ...

        def children(self) -> tuple:
            return ()

        def stop(self) -> None: ...

    monkeypatch.setattr("server.launch.stack.Stack", _Stack)
    for name in ("run_supervised", "wait_until_stopped"):  # return at once: as if stopped by Ctrl-C
        monkeypatch.setattr(f"server.launch.supervise.{name}", lambda *a, **k: True, raising=False)
    monkeypatch.setattr("server.launch.supervise.interrupt_on_sigterm", lambda: None)
    monkeypatch.setenv("XEDGE_ROUTER_API_KEYS", keys)
    monkeypatch.delenv("XEDGE_ROUTER_CACHE_SALT_SECRET", raising=False)
    monkeypatch.delenv("XEDGE_ROUTER_VLLM_API_KEY", raising=False)
    result = CliRunner().invoke(app, ["serve", *args])
    assert result.exit_code == 0, result.output
    assert ("OPEN: no API keys" in result.output) is banner
    (settings,) = started
    assert settings.vllm_api_key and settings.cache_salt_secret  # random per stack
    import os

    assert os.environ["XEDGE_ROUTER_VLLM_API_KEY"] == settings.vllm_api_key  # handed to the router
    assert os.environ["XEDGE_ROUTER_CACHE_SALT_SECRET"] == settings.cache_salt_secret


def test_stack_secrets_random_unless_configured_and_vllm_gets_its_key(tmp_path: Path) -> None:
    a, env_a = with_stack_secrets(StackSettings(), {})
    b, _ = with_stack_secrets(StackSettings(), {})
    assert a.vllm_api_key != b.vllm_api_key and a.cache_salt_secret != b.cache_salt_secret
    assert env_a == {"XEDGE_ROUTER_VLLM_API_KEY": a.vllm_api_key, "XEDGE_ROUTER_CACHE_SALT_SECRET": a.cache_salt_secret}
    assert vllm_env(a, tmp_path, "cpu")["VLLM_API_KEY"] == a.vllm_api_key
    assert vllm_auth_headers(a) == {"Authorization": f"Bearer {a.vllm_api_key}"}
    assert "VLLM_API_KEY" not in vllm_env(StackSettings(), tmp_path, "cpu")
    assert a.vllm_api_key not in repr(a)
    configured = StackSettings(vllm_api_key="k" * 20, cache_salt_secret="s" * 20)
    kept, _ = with_stack_secrets(configured, {})
    assert (kept.vllm_api_key, kept.cache_salt_secret) == ("k" * 20, "s" * 20)
    router_salt, _ = with_stack_secrets(StackSettings(), {"XEDGE_ROUTER_CACHE_SALT_SECRET": "from-the-router-env"})
    assert router_salt.cache_salt_secret == "from-the-router-env"
