"""The stack runs vLLM in float32 on CPU unless told otherwise: vLLM's own `auto` turns a float32
checkpoint into bfloat16 there, which this AVX2 CPU computes about 5x slower (routing_eval_notes.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from server.launch.vllm_cmd import vllm_argv
from server.settings import StackSettings


def _dtype(tmp_path: Path, device: str, **kw: object) -> str | None:
    settings = StackSettings(port=0, vllm_port=0, device=device, run_dir=tmp_path, **kw)
    argv = vllm_argv(settings, tmp_path, 8000, device)
    return argv[argv.index("--dtype") + 1] if "--dtype" in argv else None


def test_cpu_defaults_to_float32(tmp_path: Path) -> None:
    assert _dtype(tmp_path, "cpu") == "float32"


def test_cuda_leaves_it_to_vllm(tmp_path: Path) -> None:
    assert _dtype(tmp_path, "cuda") is None


def test_an_explicit_dtype_wins(tmp_path: Path) -> None:
    assert _dtype(tmp_path, "cpu", dtype="bfloat16") == "bfloat16"
    assert _dtype(tmp_path, "cpu", dtype="auto") == "auto"
    assert _dtype(tmp_path, "cuda", dtype="float16") == "float16"


def test_an_unknown_dtype_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="dtype"):
        StackSettings(port=0, vllm_port=0, device="cpu", run_dir=tmp_path, dtype="int8")
