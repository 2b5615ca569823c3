"""Keep a stack's children running until Ctrl-C / SIGTERM.

`supervise` (used by `xedge serve`): a child that exits, or stops answering its health check, is stopped
(its whole process group) and started again after a backoff that doubles per restart within a window
(:class:`RestartPolicy`); past ``max_restarts`` in the window it gives up and returns, and the caller stops
the stack. While vLLM is down the router keeps running: it answers 503 ``engine_unavailable`` on the edge
and OpenAI routes, ``/ready`` says which replica is unhealthy, and its sessions stay where they are (the
router's memory, or the shared store).

`wait_until_stopped` (used by `xedge up`): no restarts; returns when any child exits.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from server.launch.process import LaunchError, ManagedProcess


@dataclass(frozen=True)
class RestartPolicy:
    """Restart ``i`` (1-based, counted within ``window_s``) waits ``min(initial_delay_s * 2**(i-1),
    max_delay_s)``; restart ``max_restarts + 1`` within the window is refused. A child whose health check
    fails ``unhealthy_after`` times in a row (checked every ``health_every_s``) counts as dead."""

    initial_delay_s: float = 1.0
    max_delay_s: float = 30.0
    max_restarts: int = 5
    window_s: float = 600.0
    health_every_s: float = 5.0
    health_timeout_s: float = 10.0
    unhealthy_after: int = 3


@dataclass
class Backoff:
    policy: RestartPolicy
    clock: Callable[[], float] = time.monotonic
    restarts: list[float] = field(default_factory=list)

    def next_delay(self) -> float | None:
        """The wait before the next restart, or None when the restart budget of the window is spent."""
        now = self.clock()
        self.restarts = [t for t in self.restarts if now - t < self.policy.window_s]
        if len(self.restarts) >= self.policy.max_restarts:
            return None
        self.restarts.append(now)
        return min(self.policy.initial_delay_s * 2 ** (len(self.restarts) - 1), self.policy.max_delay_s)


class Supervised(Protocol):
    """One child the supervisor keeps running: ``process()`` is the live one (None while down),
    ``health_url`` is polled, ``restart()`` stops whatever is left of it and starts it again, blocking
    until it is ready (LaunchError if it is not)."""

    name: str

    def process(self) -> ManagedProcess | None: ...

    @property
    def health_url(self) -> str: ...

    def restart(self) -> None: ...


@dataclass
class Child:
    """A :class:`Supervised` made of callables (the stack passes its own)."""

    name: str
    get: Callable[[], ManagedProcess | None]
    url: Callable[[], str]
    start_again: Callable[[], None]

    def process(self) -> ManagedProcess | None:
        return self.get()

    @property
    def health_url(self) -> str:
        return self.url()

    def restart(self) -> None:
        self.start_again()


def _healthy(url: str, timeout_s: float) -> bool:
    try:
        return httpx.get(url, timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def supervise(
    children: Sequence[Supervised],
    say: Callable[[str], None],
    prefix: str,
    policy: RestartPolicy = RestartPolicy(),  # noqa: B008 - frozen, shared default
    *,
    stop: threading.Event | None = None,
    poll_s: float = 1.0,
) -> bool:
    """Keep ``children`` running until SIGINT/SIGTERM (or ``stop`` is set): True. False when a child
    exhausted its restarts (reported through ``say``). Installs the signal handlers when ``stop`` is None."""
    stop = stop or _stop_on_signals()
    backoff = {c.name: Backoff(policy) for c in children}
    failed_checks = {c.name: 0 for c in children}
    last_check = time.monotonic()
    while not stop.wait(poll_s):
        check_health = time.monotonic() - last_check >= policy.health_every_s
        if check_health:
            last_check = time.monotonic()
        for child in children:
            proc = child.process()
            code = None if proc is None else proc.poll()
            why = None
            if proc is None or code is not None:
                why = f"exited with code {code}" if proc is not None else "is not running"
            elif check_health:
                failed_checks[child.name] = 0 if _healthy(child.health_url, policy.health_timeout_s) else failed_checks[child.name] + 1
                if failed_checks[child.name] >= policy.unhealthy_after:
                    why = f"failed {failed_checks[child.name]} health checks in a row ({child.health_url})"
            if why is None:
                continue
            failed_checks[child.name] = 0
            log = f" (log: {proc.log_path})" if proc is not None else ""
            if not _restart(child, backoff[child.name], why + log, say, prefix, stop):
                return stop.is_set()
    return True


def _restart(child: Supervised, backoff: Backoff, why: str, say: Callable[[str], None], prefix: str,
             stop: threading.Event) -> bool:  # fmt: skip
    """Restart ``child`` (retrying with backoff while its start fails); False to stop the stack."""
    while not stop.is_set():
        delay = backoff.next_delay()
        if delay is None:
            p = backoff.policy
            say(f"{prefix}: {child.name} {why}; {p.max_restarts} restarts in {p.window_s:.0f} s already: giving up")
            return False
        say(f"{prefix}: {child.name} {why}; restarting in {delay:g} s (restart {len(backoff.restarts)} of at most "
            f"{backoff.policy.max_restarts} per {backoff.policy.window_s:.0f} s)")  # fmt: skip
        if stop.wait(delay):
            return False
        t0 = time.monotonic()
        try:
            child.restart()
        except LaunchError as exc:
            why = f"did not come back: {exc}"
            continue
        say(f"{prefix}: {child.name} is back after {time.monotonic() - t0:.0f} s")
        return True
    return False


def _stop_on_signals() -> threading.Event:
    """SIGINT/SIGTERM set the returned event; during a blocking restart they also interrupt it
    (KeyboardInterrupt, as at start-up) so Ctrl-C never waits for a slow vLLM start."""
    stop = threading.Event()

    def _handler(signum: int, frame: object) -> None:
        already = stop.is_set()
        stop.set()
        if not already:
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _handler)
    return stop


def run_supervised(children: Sequence[Supervised], say: Callable[[str], None], prefix: str,
                   policy: RestartPolicy = RestartPolicy()) -> bool:  # noqa: B008 # fmt: skip
    """:func:`supervise` with Ctrl-C / SIGTERM as the normal way out: True on a signal, False on give-up."""
    with contextlib.suppress(KeyboardInterrupt):
        return supervise(children, say, prefix, policy)
    return True


def wait_until_stopped(
    processes: Callable[[], Iterable[ManagedProcess | None]], say: Callable[[str], None], prefix: str
) -> None:
    """Block until SIGINT/SIGTERM, or until a child exits (reported in one line through `say`).

    `processes` is called on every check, so callers may pass the live view of their stack.
    """
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        for proc in processes():
            code = None if proc is None else proc.poll()
            if proc is not None and code is not None:
                say(f"{prefix}: {proc.name} exited with code {code} (log: {proc.log_path})")
                stop.set()


def interrupt_on_sigterm() -> None:
    """Make SIGTERM behave like Ctrl-C (KeyboardInterrupt) while the stack starts, so the start-up's
    cleanup stops every child already started (they run in their own process groups)."""

    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _raise)
