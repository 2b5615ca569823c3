"""Plugin status markers: the one format vLLM-side plugins write and the launcher / router read.

When ``XEDGE_STATUS_DIR`` is set, ``write_marker("attention", "impl", {...})`` writes
``$XEDGE_STATUS_DIR/attention.impl.<pid>.json`` = ``{"plugin", "event", "pid", "ppid", "detail"}`` so the
launcher and the tests can prove that our code is really in vLLM's path, in the process where it runs.
Without the variable nothing is written. :func:`read_markers` is the only reader (docs/DEVELOPING.md,
"Plugin status markers"). Standard library only: this module is imported inside vLLM's processes.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATUS_DIR_ENV = "XEDGE_STATUS_DIR"


@dataclass(frozen=True)
class PluginMarker:
    plugin: str
    event: str
    pid: int
    ppid: int
    detail: dict[str, Any]
    path: Path


def marker_name(plugin: str, event: str, pid: int) -> str:
    return f"{plugin}.{event}.{pid}.json"


def markers_enabled() -> bool:
    """Whether this process writes markers (``XEDGE_STATUS_DIR`` is set): callers that build a costly detail
    per engine step check this first."""
    return bool(os.environ.get(STATUS_DIR_ENV))


def write_marker(plugin: str, event: str, detail: dict[str, Any] | None = None) -> Path | None:
    """Write (or overwrite) this process's marker for ``plugin.event``; return its path, or None when
    ``XEDGE_STATUS_DIR`` is unset. The file is replaced atomically, so readers never see half a file."""
    status_dir = os.environ.get(STATUS_DIR_ENV)
    if not status_dir:
        return None
    directory = Path(status_dir)
    directory.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    payload = {"plugin": plugin, "event": event, "pid": pid, "ppid": os.getppid(), "detail": detail or {}}
    path = directory / marker_name(plugin, event, pid)
    # A temporary file of its own per write: two threads of one process (a stats writer thread and a
    # final flush) may write the same marker at once, and a shared name would be replaced from under one.
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=path.name + ".", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # readable by the launcher and the router, as a plain write would leave it
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(payload, sort_keys=True))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def read_markers(status_dir: Path, pattern: str = "*.json", recursive: bool = False) -> list[PluginMarker]:
    """Every readable marker in ``status_dir`` whose file name matches ``pattern``, sorted by path.

    ``recursive`` also walks sub-directories (following links: compose mounts one directory per replica).
    A file being replaced right now, or one that is not a marker, is skipped; the next read sees it whole.
    """
    if recursive:
        paths = [
            Path(root) / f
            for root, _, files in os.walk(status_dir, followlinks=True)
            for f in files
            if fnmatch.fnmatch(f, pattern)
        ]
    else:
        paths = list(status_dir.glob(pattern))
    markers = []
    for path in sorted(paths):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or "plugin" not in data or "event" not in data:
            continue
        detail = data.get("detail")
        markers.append(
            PluginMarker(
                plugin=str(data["plugin"]),
                event=str(data["event"]),
                pid=int(data.get("pid", -1)),
                ppid=int(data.get("ppid", -1)),
                detail=dict(detail) if isinstance(detail, dict) else {},
                path=path,
            )
        )
    return markers
