"""Read the plugin status markers vLLM processes write into $XEDGE_STATUS_DIR (see docs/DEVELOPING.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# (plugin, event) pairs that must be present before the stack is declared ready.
REQUIRED_EVENTS: tuple[tuple[str, str], ...] = (("attention", "impl"), ("prefix_cache", "block_pool"))


@dataclass(frozen=True)
class PluginMarker:
    plugin: str
    event: str
    pid: int
    ppid: int
    detail: dict[str, Any]


def read_markers(status_dir: Path) -> list[PluginMarker]:
    markers = []
    for path in sorted(status_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a marker being written right now; the next read sees it whole
        if not isinstance(data, dict) or "plugin" not in data or "event" not in data:
            continue
        markers.append(
            PluginMarker(
                plugin=str(data["plugin"]),
                event=str(data["event"]),
                pid=int(data.get("pid", -1)),
                ppid=int(data.get("ppid", -1)),
                detail=dict(data.get("detail") or {}),
            )
        )
    return markers


def missing_events(status_dir: Path) -> list[str]:
    """The required `plugin.event` names with no marker yet (empty list: both plugins are active)."""
    seen = {(m.plugin, m.event) for m in read_markers(status_dir)}
    return [f"{p}.{e}" for p, e in REQUIRED_EVENTS if (p, e) not in seen]


def summary(status_dir: Path) -> dict[str, Any]:
    """A JSON-able view of what is active, for /v1/xedge/status-style endpoints and tests."""
    out: dict[str, Any] = {}
    for m in read_markers(status_dir):
        out.setdefault(m.plugin, {})[m.event] = {"pid": m.pid, "ppid": m.ppid, **m.detail}
    return out
