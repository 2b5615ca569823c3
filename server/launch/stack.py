"""Start and stop one xedge stack: vLLM (with our plugins) and the router in front of it, on loopback.

Used by `xedge serve`, `xedge demo` and the end-to-end tests, so the tests run what users run.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from server.launch import plugin_status
from server.launch.ports import ensure_port_free, free_port, http_host
from server.launch.process import LaunchError, ManagedProcess
from server.launch.supervise import Child
from server.launch.vllm_cmd import ROUTER_ONLY_ENV, check_for_device, resolve_device, vllm_argv, vllm_env
from server.models.store import resolve_model_dir
from server.settings import StackSettings


@dataclass
class Stack:
    """Context manager: `with Stack(settings) as stack: stack.router_url ...`; stops every child on exit."""

    settings: StackSettings
    log: object = field(default=None)  # callable(str) for progress lines; None = stderr
    vllm: ManagedProcess | None = None
    router: ManagedProcess | None = None
    run_dir: Path = field(init=False)
    model_dir: Path = field(init=False)
    device: str = field(init=False)
    vllm_port: int = field(init=False)
    router_port: int = field(init=False)
    _own_run_dir: bool = field(init=False, default=False)

    def _say(self, line: str) -> None:
        if callable(self.log):
            self.log(line)
        else:
            print(line, file=sys.stderr, flush=True)

    @property
    def status_dir(self) -> Path:
        return self.run_dir / "status"

    @property
    def vllm_url(self) -> str:
        return f"http://127.0.0.1:{self.vllm_port}"

    @property
    def router_url(self) -> str:
        return f"http://{http_host(self.settings.host)}:{self.router_port}"

    @property
    def served_model_name(self) -> str:
        return self.settings.served_model_name or self.model_dir.name

    def start(self) -> Stack:
        s = self.settings
        self.model_dir = resolve_model_dir(s.model)
        self.router_port = s.port or 0  # 0: auto, picked in _start_router (after vLLM's start-up, see there)
        if s.router and s.port:
            ensure_port_free(s.host, s.port, "the router")
            if s.port == s.vllm_port:
                raise LaunchError(f"--port and --vllm-port are both {s.port}: the router and vLLM need a port each")
        self.vllm_port = s.vllm_port or free_port()
        while s.router and self.vllm_port == s.port and not s.vllm_port:  # an auto port must not be the router's
            self.vllm_port = free_port()
        ensure_port_free("127.0.0.1", self.vllm_port, "vLLM")
        self.device = resolve_device(s.device)
        check_for_device(s, self.device)
        try:
            if s.run_dir is None:
                self.run_dir = Path(tempfile.mkdtemp(prefix="xedge-run-"))
                self._own_run_dir = True
            else:
                self.run_dir = s.run_dir
            self.status_dir.mkdir(parents=True, exist_ok=True)
            plugin_status.clear(self.status_dir)
            (self.run_dir / "vllm.log").touch()
        except OSError as exc:
            where = s.run_dir or tempfile.gettempdir()
            raise LaunchError(f"run dir {where} (--run-dir, XEDGE_RUN_DIR): cannot write logs there ({exc})") from None
        try:
            self._start_vllm()
            if s.router:
                self._start_router()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_vllm(self) -> None:
        s = self.settings
        self._say(f"[xedge] starting vLLM ({self.device}) with {self.model_dir} on {self.vllm_url} ...")
        self.vllm = ManagedProcess(
            name="vLLM",
            argv=vllm_argv(s, self.model_dir, self.vllm_port, self.device),
            env=vllm_env(s, self.status_dir, self.device),
            withhold=ROUTER_ONLY_ENV,
            log_path=self.run_dir / "vllm.log",
            # Not the repo root: `python -m` puts the cwd first on sys.path (RUNBOOK).
            cwd=self.run_dir,
        )
        t0 = time.monotonic()
        self.vllm.start()
        self.vllm.wait_http_ok(f"{self.vllm_url}/health", s.startup_timeout_s)
        missing = plugin_status.missing_events(self.status_dir)
        if missing:
            raise LaunchError(
                f"xedge plugins are not active in vLLM's engine (missing: {', '.join(missing)}); "
                f"see {self.vllm.log_path} for 'Failed to load plugin'"
            )
        self._say(f"[xedge] vLLM ready in {time.monotonic() - t0:.0f} s; plugins active: attention, prefix_cache")

    def _start_router(self) -> None:
        s = self.settings
        if not s.port and not self.router_port:
            # Picked only now: vLLM's start-up opens ephemeral sockets of its own, and a port picked before it
            # was once taken by one of them in the meantime (the router then died with "address already in use").
            self.router_port = free_port(s.host)
        self.router = ManagedProcess(
            name="router",
            argv=[sys.executable, "-m", "router"],
            env={
                "XEDGE_ROUTER_VLLM_URLS": self.vllm_url,
                "XEDGE_ROUTER_HOST": s.host,
                "XEDGE_ROUTER_PORT": str(self.router_port),
                "XEDGE_ROUTER_SERVED_MODEL": self.served_model_name,
                "XEDGE_ROUTER_TOKENIZER_DIR": str(self.model_dir),
                "XEDGE_ROUTER_STATUS_DIR": str(self.status_dir),
            },
            log_path=self.run_dir / "router.log",
            cwd=self.run_dir,
        )
        self.router.start()
        self.router.wait_http_ok(f"{self.router_url}/health", 120.0)

    def restart_vllm(self) -> None:
        """Stop what is left of vLLM (its whole process group) and start it again on the same port,
        blocking until it is ready; the router in front keeps running (503 ``engine_unavailable`` meanwhile)."""
        if self.vllm is not None:
            self.vllm.stop()
        plugin_status.clear(self.status_dir)  # the old engine's markers must not vouch for the new one
        self._start_vllm()

    def restart_router(self) -> None:
        """Stop what is left of the router and start it again on the same port (sessions survive only
        with a shared store: XEDGE_ROUTER_SESSION_STORE=redis://...)."""
        if self.router is not None:
            self.router.stop()
        self._start_router()

    def children(self) -> list[Child]:
        """What `xedge serve` supervises: vLLM, and the router when the stack runs one."""
        kids = [Child("vLLM", lambda: self.vllm, lambda: f"{self.vllm_url}/health", self.restart_vllm)]
        if self.settings.router:
            kids.append(Child("router", lambda: self.router, lambda: f"{self.router_url}/health", self.restart_router))
        return kids

    def stop(self) -> None:
        procs = [proc for proc in (self.router, self.vllm) if proc is not None]
        for proc in procs:  # every group is told first, so a second Ctrl-C while waiting below leaves no vLLM running
            proc.terminate()
        for proc in procs:
            proc.stop()
        self.router = self.vllm = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
