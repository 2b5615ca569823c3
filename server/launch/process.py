"""A child process we own: started in its own process group, logged to a file, stopped with its whole group."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import textwrap
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

TAIL_LINES = 8
"""How many of a child's last log lines a start-up failure shows."""
_SECRET_NAME = re.compile(r"(^|_)(KEYS?|SECRET|TOKEN|PASSWORD|PASSWD)(_|$)", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"://[^/@\s]*?:([^/@\s]+)@")


def secret_values(environ: Mapping[str, str]) -> list[str]:
    """The secrets in ``environ``, longest first: values of ``*_KEY(S)`` / ``*_SECRET`` / ``*_TOKEN`` /
    ``*_PASSWORD`` variables (and each key of a ``tenant:key,...`` list), and passwords in URLs
    (``redis://:PASSWORD@host``)."""
    found: set[str] = set()
    for name, value in environ.items():
        if _SECRET_NAME.search(name):
            found.update(part for part in (value, *re.split(r"[,:\s]+", value)) if len(part) >= 8)
        found.update(m.group(1) for m in _URL_PASSWORD.finditer(value))
    return sorted(found, key=len, reverse=True)


def redact(text: str, environ: Mapping[str, str]) -> str:
    """``text`` with every secret of ``environ`` replaced by ``***``."""
    for secret in secret_values(environ):
        text = text.replace(secret, "***")
    return text


class LaunchError(RuntimeError):
    """A component of the stack could not be started; the message is one line meant for the user (a child
    that failed to start adds its last log lines, secrets masked)."""


@dataclass
class ManagedProcess:
    """`argv` run with `env` in `cwd`, stdout+stderr appended to `log_path`.

    The child gets a new session (process group), so `stop()` also reaches the processes it spawns
    (vLLM's EngineCore and worker): nothing is left behind.
    """

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    withhold: tuple[str, ...] = ()  # prefixes of inherited variables the child must not see (another's secrets)
    _proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        try:
            self._proc = subprocess.Popen(
                list(self.argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**{k: v for k, v in os.environ.items() if not k.startswith(self.withhold)}, **self.env},
                cwd=self.cwd,
                start_new_session=True,
            )
        finally:
            log.close()

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"{self.name} was not started")
        return self._proc.pid

    def poll(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` non-blank lines of the log, each secret of the child's environment masked."""
        try:
            tail = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()][-lines:]
        except OSError:
            return ""
        return redact("\n".join(tail), {**os.environ, **self.env})

    def _failed(self, headline: str) -> LaunchError:
        """LaunchError saying why: ``headline`` and the last lines of the child's log."""
        tail = self.log_tail(TAIL_LINES)
        return LaunchError(headline + (f"; its last log lines:\n{textwrap.indent(tail, '    ')}" if tail else ""))

    def wait_http_ok(self, url: str, timeout_s: float, poll_s: float = 0.5) -> None:
        """Block until GET `url` answers 200; raise LaunchError if the child dies or time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            code = self.poll()
            if code is not None:
                raise self._failed(f"{self.name} exited with code {code} before it was ready (log: {self.log_path})")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            time.sleep(poll_s)
        raise self._failed(f"{self.name} was not ready at {url} after {timeout_s:.0f} s (log: {self.log_path})")

    def terminate(self) -> None:
        """SIGTERM the process group and return at once (``stop`` waits and escalates)."""
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after `grace_s`."""
        if self._proc is None:
            return
        pgid = self._proc.pid
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            try:
                self._proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            # The leader is gone; make sure no member of its group survives it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            break
        self._proc = None
