"""End to end on the compose topology: the `router-cpu` service of deploy/compose.yml, started by
`xedge up`'s launcher with the compose file's own settings (keys, rate limits, cache salt, status dir),
in front of the suite's shared vLLM (the `cloud-cpu` settings are what `xedge serve` runs; the full
`xedge up` with its own vLLM is the slow test at the bottom).

Tenant isolation is read from vLLM's own numbers: ``usage.prompt_tokens_details.cached_tokens``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from server.launch.compose.launcher import ComposeStack
from server.launch.compose.topology import load_topology
from tests.deploy.compose_helpers import COMPOSE, ENV_EXAMPLE, SECRETS, tenant_cache_isolation

pytestmark = pytest.mark.vllm
KEY_A = "sk-acme-0123456789abcdef"
KEY_B = "sk-globex-0123456789abcdef"
BLOCK = 128  # vLLM's CPU KV block size


@pytest.fixture(scope="module")
def deployed(xedge_stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:  # noqa: ANN001
    topo = load_topology(COMPOSE, ("cpu",), env_file=ENV_EXAMPLE, environ=SECRETS)
    root = tmp_path_factory.mktemp("xedge-up")
    # The shared vLLM's plugin markers appear where compose mounts cloud-cpu's (the router reads them there).
    replica = root / "volumes" / "xedge-status" / "cloud-cpu"
    replica.mkdir(parents=True)
    (replica / "status").symlink_to(xedge_stack.status_dir)
    with ComposeStack(topo, root, router_port=0, cloud_urls={"cloud-cpu": xedge_stack.vllm_url}) as up:
        yield up


def _client(up: ComposeStack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{up.router_url}/v1", api_key=key, max_retries=0, timeout=120)


def test_openai_client_through_the_router(deployed: ComposeStack) -> None:
    client = _client(deployed, KEY_A)
    (model,) = [m.id for m in client.models.list().data]
    msgs = [{"role": "user", "content": "Name a colour."}]
    chat = client.chat.completions.create(model=model, messages=msgs, max_tokens=6, temperature=0)
    assert chat.choices[0].message.content and chat.usage is not None and chat.usage.completion_tokens > 0
    stream = client.chat.completions.create(model=model, messages=msgs, max_tokens=6, temperature=0, stream=True)
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert streamed == chat.choices[0].message.content  # greedy: the relayed stream is the same answer
    text = "".join(c.choices[0].text for c in client.completions.create(model=model, prompt="1, 2, 3,", max_tokens=4, stream=True))
    assert text
    with pytest.raises(openai.AuthenticationError):
        _client(deployed, "sk-wrong-0000000000000000").models.list()


def test_tenants_never_share_cached_prefixes(deployed: ComposeStack) -> None:
    a, b = _client(deployed, KEY_A), _client(deployed, KEY_B)
    model = a.models.list().data[0].id
    n, first_a, second_a, first_b, second_b = tenant_cache_isolation(a, b, model, BLOCK)
    print(f"\n[cache_salt] prompt {n} tokens, cached: A1 {first_a}, A2 {second_a}, B1 {first_b}, B2 {second_b}")
    metrics = httpx.get(f"{deployed.router_url}/metrics", headers={"Authorization": f"Bearer {KEY_A}"}).text
    line = next(ln for ln in metrics.splitlines() if ln.startswith('xedge_router_cloud_prompt_tokens_total{api="openai",kind="cached"}'))
    assert float(line.split()[-1]) >= second_a + second_b


def test_limits_ready_and_metrics(deployed: ComposeStack) -> None:
    client = _client(deployed, KEY_A)
    model = client.models.list().data[0].id
    with pytest.raises(openai.APIStatusError) as err:  # compose's XEDGE_MAX_BODY_BYTES default: 1 MiB
        client.completions.create(model=model, prompt="x" * (1 << 20), max_tokens=1)
    assert err.value.status_code == 413
    # From outside the container /ready and /metrics need a key (router.gate); its healthcheck is on loopback.
    auth = {"Authorization": f"Bearer {KEY_A}"}
    ready = httpx.get(f"{deployed.router_url}/ready", headers=auth)
    assert ready.status_code == 200 and ready.json()["replicas"][0]["healthy"] is True
    metrics = httpx.get(f"{deployed.router_url}/metrics", headers=auth).text
    assert 'xedge_router_errors_total{code="body_too_large"}' in metrics
    assert 'xedge_prefix_cache_block_hits_total{' in metrics and 'replica="cloud-cpu"' in metrics
    assert 'route="/v1/completions",status="200"' in metrics


@pytest.mark.slow
def test_xedge_up_starts_the_cpu_profile(tmp_path: Path) -> None:
    """`xedge up --config deploy/compose.yml --profile cpu`: its own vLLM + router, then SIGTERM stops all."""
    env = {**os.environ, **SECRETS, "XEDGE_CPU_KV_CACHE_GIB": "0.5"}
    argv = [sys.executable, "-m", "server", "up", "--config", str(COMPOSE), "--env-file", str(ENV_EXAMPLE),
            "--profile", "cpu", "--port", "0", "--run-dir", str(tmp_path)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        url = None
        assert proc.stdout is not None
        for line in proc.stdout:
            if "ready: router at " in line:
                url = line.split("ready: router at ")[1].split()[0]
                break
        assert url, f"xedge up exited with {proc.poll()}"
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY_A, max_retries=0, timeout=120)
        model = client.models.list().data[0].id
        assert client.completions.create(model=model, prompt="Hello", max_tokens=3).choices[0].text is not None
        assert httpx.get(f"{url}/ready").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
