"""Healthcheck of a compose ``cloud`` container: vLLM's ``/health`` answers 200 and both xedge plugins
wrote their markers (attention impl, prefix-cache block pool) in ``XEDGE_STATUS_DIR``. Exit 0 or 1."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from server.launch.cloud_entry import DEFAULT_PORT
from server.launch.plugin_status import missing_events


def check(port: int, status_dir: Path) -> str | None:
    """None when healthy, else why not (one line)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            if response.status != 200:
                return f"vLLM /health answered {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        return f"vLLM /health unreachable: {exc}"
    missing = missing_events(status_dir)
    if missing:
        return f"xedge plugins not active in vLLM (missing markers: {', '.join(missing)})"
    return None


def main() -> None:
    port = int(os.environ.get("XEDGE_VLLM_PORT") or DEFAULT_PORT)
    problem = check(port, Path(os.environ.get("XEDGE_STATUS_DIR", "/run/xedge/status")))
    if problem:
        print(problem, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
