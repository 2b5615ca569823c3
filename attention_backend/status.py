"""Plugin status markers (docs/DEVELOPING.md, "Plugin status markers").

When ``XEDGE_STATUS_DIR`` is set, ``write_marker("attention", "impl", {...})`` writes
``$XEDGE_STATUS_DIR/attention.impl.<pid>.json`` so the launcher and the tests can prove that our code
is really in vLLM's path, in the process where it runs. Without the variable nothing is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STATUS_DIR_ENV = "XEDGE_STATUS_DIR"


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
    path = directory / f"{plugin}.{event}.{pid}.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, sort_keys=True))
    os.replace(tmp, path)
    return path
