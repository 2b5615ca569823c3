"""What the launcher requires of the plugin status markers (format and reader: client_edge.protocol.status_marker)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from client_edge.protocol.status_marker import read_markers

# (plugin, event) pairs that must be present before the stack is declared ready.
REQUIRED_EVENTS: tuple[tuple[str, str], ...] = (("attention", "impl"), ("prefix_cache", "block_pool"))


def missing_events(status_dir: Path) -> list[str]:
    """The required `plugin.event` names with no marker yet (empty list: both plugins are active)."""
    seen = {(m.plugin, m.event) for m in read_markers(status_dir)}
    return [f"{p}.{e}" for p, e in REQUIRED_EVENTS if (p, e) not in seen]


def clear(status_dir: Path) -> None:
    """Remove every marker in ``status_dir`` (a previous vLLM's: it must not vouch for the next one), and
    nothing else (``--run-dir`` may be a directory of the user's)."""
    for marker in read_markers(status_dir):
        marker.path.unlink(missing_ok=True)


def summary(status_dir: Path) -> dict[str, Any]:
    """A JSON-able view of what is active, for /v1/xedge/status-style endpoints and tests."""
    out: dict[str, Any] = {}
    for m in read_markers(status_dir):
        out.setdefault(m.plugin, {})[m.event] = {"pid": m.pid, "ppid": m.ppid, **m.detail}
    return out
