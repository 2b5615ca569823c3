"""Where the shared real data lives: $XEDGE_DATA_ROOT, else ../shared/data beside the repository."""

from __future__ import annotations

import os
from pathlib import Path


def data_root() -> Path:
    env = os.environ.get("XEDGE_DATA_ROOT")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"
