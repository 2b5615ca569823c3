"""A converted model must be readable by another uid (image built as root, services run as 10001)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from server.models.store import _plain_modes


def test_converted_model_gets_plain_modes(tmp_path: Path) -> None:
    model = Path(tempfile.mkdtemp(dir=tmp_path))  # 0700, as convert_gguf's scratch directory
    (model / "sub").mkdir(mode=0o700)
    weights = model / "model.safetensors"
    weights.write_bytes(b"w")
    weights.chmod(0o600)  # as safetensors writes it
    old = os.umask(0o022)
    try:
        _plain_modes(model)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (model, model / "sub", weights)}
    assert modes == {model.name: 0o755, "sub": 0o755, "model.safetensors": 0o644}
