"""Run started children until Ctrl-C / SIGTERM or until one of them exits, as `xedge serve` and `xedge up` do."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable

from server.launch.process import ManagedProcess


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
