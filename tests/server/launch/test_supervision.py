"""The supervisor of `xedge serve` on real child processes (small HTTP servers): a killed child is restarted
after its backoff, a hung one (health check failing) too, restarts are bounded, and it gives up cleanly."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from server.launch.ports import free_port
from server.launch.process import LaunchError, ManagedProcess
from server.launch.supervise import Backoff, Child, RestartPolicy, supervise

FAST = RestartPolicy(initial_delay_s=0.1, max_delay_s=0.4, max_restarts=3, window_s=60, health_every_s=0.2,
                     health_timeout_s=0.5, unhealthy_after=2)  # fmt: skip


class HttpChild:
    """A `python -m http.server` child; ``health_port`` may differ from the port it serves (a hung child)."""

    def __init__(self, tmp: Path, name: str = "web", *, hung: bool = False) -> None:
        self.port = free_port()
        self.health_port = free_port() if hung else self.port
        self.tmp = tmp
        self.name = name
        self.proc: ManagedProcess | None = None
        self.starts = 0

    def start(self) -> None:
        if self.proc is not None:
            self.proc.stop(grace_s=2)
        self.proc = ManagedProcess(self.name, [sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1"],
                                   self.tmp / f"{self.name}.log", cwd=self.tmp)  # fmt: skip
        self.proc.start()
        self.proc.wait_http_ok(f"http://127.0.0.1:{self.port}/", 20, poll_s=0.05)
        self.starts += 1

    def child(self) -> Child:
        return Child(self.name, lambda: self.proc, lambda: f"http://127.0.0.1:{self.health_port}/", self.start)


def _run(children: list[Child], policy: RestartPolicy) -> tuple[threading.Event, list[str], list[bool], threading.Thread]:
    stop, said, result = threading.Event(), [], []
    thread = threading.Thread(target=lambda: result.append(supervise(children, said.append, "test", policy, stop=stop,
                                                                        poll_s=0.05)), daemon=True)  # fmt: skip
    thread.start()
    return stop, said, result, thread


def _until(cond, timeout_s: float = 20.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_backoff_doubles_is_capped_and_bounded_per_window() -> None:
    now = [0.0]
    b = Backoff(RestartPolicy(initial_delay_s=1, max_delay_s=5, max_restarts=4, window_s=100), clock=lambda: now[0])
    assert [b.next_delay() for _ in range(5)] == [1, 2, 4, 5, None]
    now[0] = 101.0  # the window has passed: the budget is back, from the first delay
    assert b.next_delay() == 1


def test_a_killed_child_is_restarted_after_its_backoff(tmp_path: Path) -> None:
    web = HttpChild(tmp_path)
    web.start()
    stop, said, result, thread = _run([web.child()], FAST)
    try:
        first = web.proc
        assert first is not None
        os.killpg(first.pid, signal.SIGKILL)
        _until(lambda: web.starts == 2)
        assert web.proc is not first and web.proc.poll() is None  # type: ignore[union-attr]
        assert "web exited with code -9" in said[0] and "restarting in 0.1 s (restart 1 of at most 3 per 60 s)" in said[0]
        _until(lambda: any("web is back" in m for m in said))
    finally:
        stop.set()
        thread.join(10)
        web.proc.stop(grace_s=2)  # type: ignore[union-attr]
    assert result == [True]


def test_a_hung_child_is_restarted(tmp_path: Path) -> None:
    web = HttpChild(tmp_path, hung=True)  # alive, but its health URL never answers
    web.start()
    stop, said, result, thread = _run([web.child()], FAST)
    try:
        _until(lambda: web.starts >= 2)
        assert any("failed 2 health checks in a row" in m for m in said), said
    finally:
        stop.set()
        thread.join(10)
        web.proc.stop(grace_s=2)  # type: ignore[union-attr]


def test_restarts_are_bounded_then_it_gives_up(tmp_path: Path) -> None:
    attempts = []

    def broken_start() -> None:
        attempts.append(time.monotonic())
        raise LaunchError("vLLM exited with code 1 before it was ready")

    dead = ManagedProcess("vLLM", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "dead.log")
    dead.start()
    stop, said, result, thread = _run([Child("vLLM", lambda: dead, lambda: "http://127.0.0.1:9/", broken_start)], FAST)
    thread.join(20)
    assert not thread.is_alive() and result == [False]
    assert len(attempts) == FAST.max_restarts
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert all(g >= 0.19 for g in gaps), gaps  # backoff 0.1, 0.2, 0.4 s: no busy loop
    assert "exited with code 3" in said[0]
    assert "did not come back: vLLM exited with code 1" in said[1]
    assert said[-1].endswith("3 restarts in 60 s already: giving up")
