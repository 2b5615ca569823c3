"""`xedge serve` refuses bad input with one clear line, a non-zero exit and no child process left."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

XEDGE = [sys.executable, "-m", "server"]


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*XEDGE, *args], capture_output=True, text=True, timeout=120)


def _children_left(pid_marker: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if pid_marker in " ".join(p.info["cmdline"] or [])]


def test_missing_model_dir_exits_with_one_line(tmp_path):
    res = _run(["serve", "--model", "/no/such/dir", "--port", "0", "--run-dir", str(tmp_path)])
    assert res.returncode == 1
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines == ["xedge serve: model directory '/no/such/dir' does not exist (expected a local HF model dir)"]
    assert not _children_left(str(tmp_path))


def test_busy_port_exits_with_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = _run(["serve", "--port", str(port), "--run-dir", str(tmp_path)])
    assert res.returncode == 1
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"xedge serve: port 127.0.0.1:{port} for the router is busy")
    assert not _children_left(str(tmp_path))


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--xattn-threshold", "1.5"], "threshold"),
        (["--xattn-stride", "7"], "stride"),
        (["--block-size", "0"], "--block-size"),
    ],
)
def test_bad_xattn_flags_are_refused_before_start(tmp_path, args, needle):
    res = _run(["serve", "--port", "0", "--run-dir", str(tmp_path), *args])
    assert res.returncode == 2
    assert needle in res.stderr
    assert not _children_left(str(tmp_path))


def test_sigterm_stops_every_child_process(tmp_path):
    """SIGTERM while vLLM is starting: `xedge serve` exits and leaves none of its descendants behind."""
    proc = subprocess.Popen(
        [*XEDGE, "serve", "--port", "0", "--run-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        descendants: list[psutil.Process] = []
        # Wait until vLLM's API server has loaded our plugins (a marker in the status dir): children exist.
        while time.monotonic() < deadline and not list((tmp_path / "status").glob("prefix_cache.registered.*")):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.5)
        descendants = psutil.Process(proc.pid).children(recursive=True)
        assert descendants, "vLLM was not started"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) != 0
        gone, alive = psutil.wait_procs(descendants, timeout=30)
        assert not alive, f"left behind: {[p.pid for p in alive]}"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_unknown_prefix_cache_policy_lists_the_valid_names(tmp_path):
    res = _run(["serve", "--port", "0", "--run-dir", str(tmp_path), "--prefix-cache-policy", "nope"])
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "xedge serve: --prefix-cache-policy: unknown prefix-cache policy 'nope'; valid: density, guarded, lru, s3fifo, session, session-due, workload, workload-paper"
    ]
    assert not _children_left(str(tmp_path))
