"""`xedge up`'s engine: start a compose topology's services as processes on loopback.

Each ``cloud`` service becomes a :class:`server.launch.stack.Stack` (vLLM with our plugins, no router),
configured from the service's ``XEDGE_*`` environment exactly as its container entry point is; the
``router`` service becomes ``python -m router`` with the service's ``XEDGE_ROUTER_*`` environment, where
compose-network URLs (``http://cloud:8000``) are rewritten to the replicas' loopback URLs and container
paths to host paths through the service's volumes (named volumes live under ``<run_root>/volumes``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from server.launch.cloud_settings import stack_settings_from_env
from server.launch.compose.resolve import ComposeError
from server.launch.compose.topology import Service, Topology
from server.launch.ports import ensure_port_free, free_port
from server.launch.process import ManagedProcess, redact
from server.launch.stack import Stack
from server.settings import StackSettings

ROUTER_READY_TIMEOUT_S = 180.0


@dataclass
class ComposeStack:
    """Context manager over a topology: ``with ComposeStack(topo, run_root) as up: up.router_url``.

    ``router_port``: None = the port the compose file publishes; 0 = a free one. ``cloud_urls``: cloud
    services already running elsewhere (name -> base URL), not started here (tests reuse one vLLM).
    ``overrides``: StackSettings fields forced on every started cloud (e.g. a smaller KV cache).
    """

    topology: Topology
    run_root: Path
    router_port: int | None = None
    cloud_urls: Mapping[str, str] = field(default_factory=dict)
    overrides: Mapping[str, object] = field(default_factory=dict)
    log: Callable[[str], None] | None = None
    clouds: dict[str, Stack] = field(init=False, default_factory=dict)
    urls: dict[str, str] = field(init=False, default_factory=dict)
    router: ManagedProcess | None = field(init=False, default=None)
    router_url: str = field(init=False, default="")

    def _say(self, line: str) -> None:
        (self.log or (lambda s: print(s, file=sys.stderr, flush=True)))(line)

    @property
    def base(self) -> Path:
        return self.topology.path.parent

    @property
    def volume_root(self) -> Path:
        return self.run_root / "volumes"

    def cloud_settings(self, svc: Service) -> StackSettings:
        env = svc.environment
        status = env.get("XEDGE_STATUS_DIR")
        if not status:
            raise ComposeError(f"service {svc.name}: XEDGE_STATUS_DIR must be set (the router reads the stats there)")
        host_status = svc.host_path(status, self.volume_root, self.base)
        if host_status.name != "status":
            raise ComposeError(f"service {svc.name}: XEDGE_STATUS_DIR must end in '/status', got {status}")
        fields: dict[str, object] = {"run_dir": host_status.parent, "router": False, "port": 0, "vllm_port": 0}
        if env.get("XEDGE_MODEL"):
            fields["model"] = str(svc.host_path(env["XEDGE_MODEL"], self.volume_root, self.base))
        fields.update(self.overrides)
        return stack_settings_from_env(env, **fields)

    def router_env(self) -> dict[str, str]:
        svc = self.topology.router
        env = dict(svc.environment)
        mapped = []
        for url in (u.strip() for u in env.get("XEDGE_ROUTER_VLLM_URLS", "").split(",") if u.strip()):
            host = urlsplit(url).hostname
            if host not in self.urls:
                raise ComposeError(f"router: vLLM URL {url} names {host!r}, not an active cloud service {sorted(self.urls)}")
            mapped.append(self.urls[host])
        if not mapped:
            raise ComposeError("router: XEDGE_ROUTER_VLLM_URLS is empty")
        env["XEDGE_ROUTER_VLLM_URLS"] = ",".join(mapped)
        container_port = int(env.get("XEDGE_ROUTER_PORT", "8080"))
        port = self.router_port
        if port is None:
            port = svc.published_ports.get(container_port)
            if port is None:
                raise ComposeError(f"router: port {container_port} is not published in the compose file; pass a port")
        port = port or free_port()
        ensure_port_free("127.0.0.1", port, "the router")
        env["XEDGE_ROUTER_HOST"] = "127.0.0.1"
        env["XEDGE_ROUTER_PORT"] = str(port)
        for key in ("XEDGE_ROUTER_STATUS_DIR", "XEDGE_ROUTER_TOKENIZER_DIR"):
            if env.get(key):
                env[key] = str(svc.host_path(env[key], self.volume_root, self.base))
        return env

    def plan(self) -> list[str]:
        """What `start` would run, one line per service (for ``xedge up --dry-run``)."""
        lines = []
        for svc in self.topology.clouds:
            if svc.name in self.cloud_urls:
                lines.append(f"cloud  {svc.name}: reuse {self.cloud_urls[svc.name]}")
                continue
            s = self.cloud_settings(svc)
            lines.append(
                f"cloud  {svc.name}: vLLM model={s.model or '(packaged SmolLM2-135M-Instruct)'} device={s.device} "
                f"policy={s.prefix_cache_policy} max_model_len={s.max_model_len} run_dir={s.run_dir}"
            )
        env = {k: v for k, v in self.topology.router.environment.items() if k.startswith("XEDGE_ROUTER_")}
        shown = {k: ("***" if "KEY" in k or "SECRET" in k else redact(v, env)) for k, v in sorted(env.items())}
        lines.append(f"router {self.topology.router.name}: python -m router {shown}")
        return lines

    def start(self) -> ComposeStack:
        self.run_root.mkdir(parents=True, exist_ok=True)
        try:
            for svc in self.topology.clouds:
                if svc.name in self.cloud_urls:
                    self.urls[svc.name] = self.cloud_urls[svc.name]
                    continue
                self._say(f"[xedge up] {svc.name}: starting")
                stack = Stack(self.cloud_settings(svc), log=self.log)
                self.clouds[svc.name] = stack
                stack.start()
                self.urls[svc.name] = stack.vllm_url
            self._start_router()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_router(self) -> None:
        env = self.router_env()
        name = self.topology.router.name
        self.router_url = f"http://127.0.0.1:{env['XEDGE_ROUTER_PORT']}"
        self.router = ManagedProcess(
            name=name, argv=[sys.executable, "-m", "router"], env=env,
            log_path=self.run_root / f"{name}.log", cwd=self.run_root,
        )  # fmt: skip
        t0 = time.monotonic()
        self.router.start()
        self.router.wait_http_ok(f"{self.router_url}/ready", ROUTER_READY_TIMEOUT_S)
        self._say(f"[xedge up] {name}: ready at {self.router_url} in {time.monotonic() - t0:.0f} s")

    def stop(self) -> None:
        if self.router is not None:
            self.router.stop()
            self.router = None
        for stack in reversed(list(self.clouds.values())):
            stack.stop()
        self.clouds.clear()

    def __enter__(self) -> ComposeStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
