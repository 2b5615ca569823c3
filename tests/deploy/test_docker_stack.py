"""deploy/ on a real Docker engine: build the router and CPU images with `docker compose build`, run the
compose `cpu` profile (`up --wait`), use it as a client would, then `down` with nothing left; and build
the GPU image (deploy/Dockerfile.cloud) on a stand-in base (the CPU image with xedge removed: a vLLM
install run as root, like vllm/vllm-openai), so only the CUDA runtime is left unverified.

The test reaches the stack only through the router's port, published on 127.0.0.1; the containers talk
to each other only on the compose network of this test's own project. Skips (with the reason) when no
engine answers; scripts/test.sh starts one with ../shared/docker/offline_engine.sh when docker is
installed. Wall-clock seconds per phase are printed (`[docker stack] ...`).
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest

from client_edge.client import EdgeClient
from client_edge.gates.random_gate import RandomGate
from client_edge.result import TokenSource
from client_edge.retry import RetryPolicy
from client_edge.session import EdgeSession, SessionConfig
from server.launch.ports import free_port
from tests.deploy.compose_helpers import tenant_cache_isolation
from tests.deploy.docker_helpers import (
    ComposeProject,
    Timer,
    docker_or_skip,
    image_ids,
    remove_superseded,
    require_disk,
    run,
    torch_index,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(3600)]

TAG = "ci"  # image tags (xedge-router:ci, ...): kept after the test, so a rerun reuses the layer cache
# Build order (a child after its base): the images a rerun supersedes are removed children first.
ROUTER, CLOUD_CPU, STANDIN, CLOUD = (f"{name}:{TAG}" for name in ("xedge-router", "xedge-cloud-cpu", "xedge-vllm-standin", "xedge-cloud"))
IMAGES = (ROUTER, CLOUD_CPU, STANDIN, CLOUD)
DISK_GIB = 12  # free space the builds need: the CPU image is 3.9 GB and pip unpacks its wheels beside it
KEY_A = "sk-acme-docker-0123456789abcdef"
KEY_B = "sk-globex-docker-0123456789abcdef"
BLOCK = 128  # vLLM's CPU KV block size
TIMER = Timer()


@dataclass
class Deployed:
    docker: str
    compose: ComposeProject
    url: str
    port: int

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=300)

    def model(self) -> str:
        (model,) = [m.id for m in self.client(KEY_A).models.list().data]
        return model

    def logs(self, service: str) -> str:
        """The last lines of a service's log and its restart count (for failure messages)."""
        (c,) = [c for c in self.compose.containers(self.docker) if c["Config"]["Labels"]["com.docker.compose.service"] == service]
        return f"{service} restarts={c['RestartCount']}:\n" + self.compose("logs", "--no-color", "--tail", "400", service, timeout=60)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ComposeProject, int]]:
    """The router and CPU images built by `docker compose build` (the compose file's own build sections)."""
    docker = docker_or_skip()
    require_disk(docker, DISK_GIB)
    before = image_ids(docker, IMAGES)
    project = f"xedge-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {
        "XEDGE_API_KEYS": f"acme:{KEY_A},globex:{KEY_B}",
        "XEDGE_CACHE_SALT_SECRET": f"docker-test-{uuid.uuid4().hex}",
        "XEDGE_ROUTER_PUBLISH": f"127.0.0.1:{port}",
        "XEDGE_IMAGE_TAG": TAG,
        "XEDGE_CPU_KV_CACHE_GIB": "1",
    }
    with torch_index(tmp_path_factory.mktemp("torch-index")) as (index_url, host_network):
        if index_url:
            env["XEDGE_TORCH_INDEX_URL"] = index_url
        if host_network:
            env["XEDGE_BUILD_NETWORK"] = "host"
        compose = ComposeProject(project, env)
        with TIMER.phase("build router + cpu images (compose build)"):
            compose("--profile", "cpu", "build", timeout=3000)
    yield docker, compose, port
    removed = remove_superseded(docker, before)
    print(f"[docker stack] superseded images removed: {len(removed)}", file=sys.stderr, flush=True)


@pytest.fixture(scope="module")
def deployed(images: tuple[str, ComposeProject, int]) -> Iterator[Deployed]:
    docker, compose, port = images
    try:
        with TIMER.phase("compose up --wait (cpu profile)"):
            compose("--profile", "cpu", "up", "-d", "--wait", "--wait-timeout", "900", "--no-build", timeout=1000)
        yield Deployed(docker, compose, f"http://127.0.0.1:{port}", port)
    finally:
        compose("--profile", "cpu", "down", "-v", "--remove-orphans", timeout=300)
        print(f"[docker stack] phases (s): {json.dumps(TIMER.phases)}", file=sys.stderr, flush=True)


def test_containers_are_healthy_non_root_and_reachable_only_on_loopback(deployed: Deployed) -> None:
    containers = {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in deployed.compose.containers(deployed.docker)}
    assert set(containers) == {"cloud-cpu", "router-cpu"}
    network = f"{deployed.compose.project}_default"
    for name, c in containers.items():
        assert c["State"]["Health"]["Status"] == "healthy", (name, c["State"]["Health"]["Log"][-1:])
        assert c["Config"]["User"] == "xedge", name
        assert set(c["NetworkSettings"]["Networks"]) == {network}, name  # only this test's compose network
    assert containers["router-cpu"]["HostConfig"]["PortBindings"] == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(deployed.port)}]}
    assert not containers["cloud-cpu"]["HostConfig"]["PortBindings"]  # vLLM is never published
    net = json.loads(run([deployed.docker, "network", "inspect", network], timeout=60))[0]
    assert net["Labels"]["com.docker.compose.project"] == deployed.compose.project
    # The cloud healthcheck (vLLM /health + both plugins' markers) passes inside the container right now.
    run([deployed.docker, "exec", containers["cloud-cpu"]["Id"], "python3", "-m", "server.launch.healthcheck"], timeout=60)
    sizes = {}
    for image in (ROUTER, CLOUD_CPU):
        sizes[image] = int(run([deployed.docker, "image", "inspect", "-f", "{{.Size}}", image], timeout=60)) / 1e6
    print(f"[docker stack] image sizes (MB): {json.dumps({k: round(v) for k, v in sizes.items()})}", file=sys.stderr)


def test_openai_client_chat_and_stream_through_the_router(deployed: Deployed) -> None:
    with TIMER.phase("openai chat + stream"):
        client = deployed.client(KEY_A)
        model = deployed.model()
        msgs = [{"role": "user", "content": "Name a colour."}]
        chat = client.chat.completions.create(model=model, messages=msgs, max_tokens=8, temperature=0)
        assert chat.choices[0].message.content and chat.usage is not None and chat.usage.completion_tokens > 0
        stream = client.chat.completions.create(model=model, messages=msgs, max_tokens=8, temperature=0, stream=True)
        streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert streamed == chat.choices[0].message.content  # greedy: the relayed stream is the same answer
        with pytest.raises(openai.AuthenticationError):
            deployed.client("sk-wrong-000000000000000000").models.list()


def test_second_tenant_never_hits_the_first_ones_cache(deployed: Deployed) -> None:
    with TIMER.phase("tenant isolation (cached tokens)"):
        a, b = deployed.client(KEY_A), deployed.client(KEY_B)
        model = deployed.model()
        n, first_a, second_a, first_b, second_b = tenant_cache_isolation(a, b, model, BLOCK)
        print(f"[docker stack] cached tokens of a {n}-token prompt: A {first_a}, {second_a}; B {first_b}, {second_b}", file=sys.stderr)


def test_metrics_scraped(deployed: Deployed) -> None:
    response = httpx.get(f"{deployed.url}/metrics", headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30)
    assert response.status_code == 200, response.text
    metrics = response.text

    def value(name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        lines = [ln for ln in metrics.splitlines() if ln.startswith(name + "{")
                 and all(f'{k}="{v}"' in ln.split("}")[0] for k, v in labels.items())]  # fmt: skip
        assert lines, (f"no {name} {labels} in /metrics", [ln for ln in metrics.splitlines() if ln.startswith(name)], deployed.logs("router-cpu"))
        return sum(float(ln.split()[-1]) for ln in lines)

    assert value("xedge_router_requests_total", route="/v1/chat/completions", status="200") >= 2
    assert value("xedge_router_cloud_prompt_tokens_total", api="openai", kind="cached") >= 2 * 4 * BLOCK
    assert value("xedge_router_errors_total", code="unauthorized") >= 1
    # The eviction policy's counters from the replica, read from the plugin status files on the shared volume.
    assert value("xedge_prefix_cache_block_hits_total", replica="cloud-cpu") > 0


def test_edge_session_through_the_sdk(deployed: Deployed) -> None:
    """The edge runs SmolLM2 locally (the host's converted copy, same tokenizer as the container's) and the
    cloud verifies every draft: the answer is the cloud's greedy one, token for token."""
    from client_edge.runner.transformers_runner import TransformersRunner, TransformersRunnerConfig
    from server.models.store import ensure_default_model

    with TIMER.phase("edge session (SDK, speculative)"):
        runner = TransformersRunner(TransformersRunnerConfig(ensure_default_model(), num_threads=1))
        prompt = runner.apply_chat_template("Name three colours of the rainbow.")
        errors: list[str] = []

        def record(response: httpx.Response) -> None:
            if response.status_code >= 400:
                response.read()
                errors.append(f"{response.request.method} {response.request.url.path} -> {response.status_code} {response.text[:300]}")

        http = httpx.Client(event_hooks={"response": [record]})
        edge = EdgeClient(deployed.url, api_key=KEY_A, retry=RetryPolicy(max_retries=1, initial_delay_s=0.05, max_delay_s=0.1),
                          timeout=httpx.Timeout(300.0, connect=5.0), http_client=http)  # fmt: skip
        cfg = SessionConfig(strategy="speculative", draft_len=4, max_new_tokens=12, cloud_deadline_s=300.0)
        with edge:
            res = EdgeSession(runner, RandomGate.at_rate(1.0), edge, cfg).generate(prompt)
        http.close()
        if res.cloud_failures or res.n_unverified:  # the whole logs to stderr: pytest shortens long messages
            print(errors, deployed.logs("router-cpu"), deployed.logs("cloud-cpu"), sep="\n", file=sys.stderr)
        assert res.cloud_failures == 0 and res.n_unverified == 0, errors
        assert res.count(TokenSource.CLOUD) + res.count(TokenSource.VERIFIED) == len(res.token_ids) > 0
        greedy = deployed.client(KEY_A).completions.create(
            model=deployed.model(), prompt=prompt, max_tokens=len(res.token_ids), temperature=0,
            extra_body={"return_token_ids": True},
        )  # fmt: skip
        want = greedy.choices[0].model_extra.get("token_ids")  # type: ignore[union-attr]
        assert want is not None, "vLLM did not return token ids"
        assert res.token_ids == list(want)[: len(res.token_ids)]
        metrics = httpx.get(f"{deployed.url}/metrics", headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30).text
        verified = [ln for ln in metrics.splitlines() if ln.startswith("xedge_router_escalations_total{") and 'kind="verify"' in ln]
        assert verified and sum(float(ln.split()[-1]) for ln in verified) >= 1, verified


def test_down_leaves_nothing_running(deployed: Deployed) -> None:
    with TIMER.phase("compose down -v"):
        deployed.compose("--profile", "cpu", "down", "-v", "--remove-orphans", timeout=300)
    assert deployed.compose.leftovers(deployed.docker) == {"containers": [], "networks": [], "volumes": []}
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{deployed.url}/health", timeout=5)


def test_gpu_image_builds_on_a_stand_in_base(images: tuple[str, ComposeProject, int]) -> None:
    """deploy/Dockerfile.cloud with VLLM_IMAGE = a vLLM install run as root (the CPU image minus xedge):
    both plugins register in that vLLM, the entry point builds vLLM's command, it runs as xedge, and
    not one package of the base changed (only xedge was added)."""
    docker, compose, _ = images
    with TIMER.phase("gpu image on a stand-in base"):
        base = f"FROM {CLOUD_CPU}\nUSER root\nRUN pip uninstall -y xedge && userdel -r xedge && rm -rf /run/xedge\n"
        run([docker, "build", "-q", "-t", STANDIN, "-"], input=base, timeout=600)
        compose("--profile", "gpu", "build", "--build-arg", f"VLLM_IMAGE={STANDIN}", "cloud", timeout=1200)
    config = json.loads(run([docker, "image", "inspect", CLOUD], timeout=60))[0]["Config"]
    assert config["User"] == "xedge" and config["Entrypoint"] == ["python3", "-m", "server.launch.cloud_entry"]
    probe = (
        "import json, os, pathlib\n"
        "from importlib.metadata import entry_points\n"
        "from vllm.plugins import load_general_plugins\n"
        "from client_edge.protocol.status_marker import read_markers\n"
        "from server.launch.cloud_entry import cloud_command\n"
        "load_general_plugins()\n"
        "status = pathlib.Path(os.environ['XEDGE_STATUS_DIR'])\n"
        "model = pathlib.Path('/tmp/model'); model.mkdir(); (model / 'config.json').write_text('{}')\n"
        "argv, env, _ = cloud_command({**os.environ, 'XEDGE_MODEL': str(model)})\n"
        "print(json.dumps({'eps': sorted(e.name for e in entry_points(group='vllm.general_plugins')),\n"
        "  'markers': sorted(f'{m.plugin}.{m.event}' for m in read_markers(status)), 'argv': argv,\n"
        "  'plugins': env.get('VLLM_PLUGINS'), 'uid': os.getuid()}))\n"
    )
    out = json.loads(run([docker, "run", "--rm", "--network", "none", "--entrypoint", "python3", CLOUD, "-c", probe], timeout=300).splitlines()[-1])
    assert {"xedge_attention", "xedge_prefix_cache"} <= set(out["eps"]), out
    assert {"attention.registered", "prefix_cache.registered"} <= set(out["markers"]), out
    assert out["argv"][1:3] == ["-m", "vllm.entrypoints.openai.api_server"] and "--enable-prefix-caching" in out["argv"]
    assert out["plugins"] == "xedge_attention,xedge_prefix_cache" and out["uid"] == 10001

    def freeze(img: str) -> set[str]:
        lines = run([docker, "run", "--rm", "--network", "none", "--entrypoint", "python3", img, "-m", "pip", "freeze"], timeout=300)
        return {ln for ln in lines.splitlines() if ln.strip()}

    added, removed = freeze(CLOUD) - freeze(STANDIN), freeze(STANDIN) - freeze(CLOUD)
    assert not removed and [a.split()[0].split("==")[0] for a in added] == ["xedge"], (added, removed)
