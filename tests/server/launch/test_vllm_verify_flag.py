"""Whether the stack loads the verify logits processor into vLLM (``StackSettings.sampling_verify``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.engine.verify import PROCESSOR_FQCN
from server.launch.vllm_cmd import vllm_argv
from server.settings import StackSettings


def _processors(tmp_path: Path, device: str, **kw: object) -> str | None:
    argv = vllm_argv(StackSettings(port=0, vllm_port=0, device=device, run_dir=tmp_path, **kw), tmp_path, 8000, device)
    return argv[argv.index("--logits-processors") + 1] if "--logits-processors" in argv else None


@pytest.mark.parametrize(("device", "setting", "want"), [
    ("cpu", None, PROCESSOR_FQCN), ("cuda", None, None),  # defaults: V1 runner on CPU anyway; keep V2 on CUDA
    ("cuda", True, PROCESSOR_FQCN), ("cpu", False, None),
])  # fmt: skip
def test_default_and_explicit(tmp_path: Path, device: str, setting: bool | None, want: str | None) -> None:
    assert _processors(tmp_path, device, sampling_verify=setting) == want


def test_the_named_class_is_a_vllm_logits_processor() -> None:
    pytest.importorskip("vllm")
    import importlib

    from vllm.v1.sample.logits_processor import LogitsProcessor

    module, cls = PROCESSOR_FQCN.split(":")
    assert issubclass(getattr(importlib.import_module(module), cls), LogitsProcessor)
