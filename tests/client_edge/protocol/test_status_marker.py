"""Status markers: whole files for readers, also when threads of one process write the same marker."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from client_edge.protocol.status_marker import STATUS_DIR_ENV, read_markers, write_marker


def test_no_marker_without_status_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STATUS_DIR_ENV, raising=False)
    assert write_marker("prefix_cache", "stats", {"n": 1}) is None


def test_threads_writing_one_marker_all_succeed(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    # The prefix cache's stats thread and the final flush write prefix_cache.stats of one pid at once: with a
    # shared temporary name one thread's os.replace found its file already moved (FileNotFoundError).
    monkeypatch.setenv(STATUS_DIR_ENV, str(tmp_path))
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer(k: int) -> None:
        start.wait()
        try:
            for i in range(200):
                write_marker("prefix_cache", "stats", {"writer": k, "i": i})
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    (marker,) = read_markers(tmp_path)
    assert marker.plugin == "prefix_cache" and marker.event == "stats"
    assert marker.detail["i"] == 199
    assert sorted(p.name for p in tmp_path.iterdir()) == [marker.path.name]  # no temporary file left
    assert marker.path.stat().st_mode & 0o644 == 0o644


def test_protocol_does_not_load_the_sdk_http_stack() -> None:
    # vLLM's engine and workers import the contracts (markers, request metadata) through the attention backend and
    # the prefix-cache plugin; the edge SDK's client (httpx) must stay out of those processes.
    code = (
        "import sys, attention_backend.config, client_edge.protocol.status_marker, client_edge.protocol.engine_xargs; "
        "assert 'httpx' not in sys.modules and 'client_edge.client' not in sys.modules, sorted(sys.modules); "
        "from client_edge import EdgeClient, XEdgeError; assert 'httpx' in sys.modules; print('ok')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
