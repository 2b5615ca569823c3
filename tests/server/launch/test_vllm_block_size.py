"""`xedge serve` picks vLLM's KV block size: on CUDA, whole XAttention blocks (the sparse kernel's fast
page-aligned path) unless the user set one; on CPU, vLLM's own choice (128 there)."""

from __future__ import annotations

from pathlib import Path

from server.launch.vllm_cmd import vllm_argv
from server.settings import StackSettings


def _block_size(tmp_path: Path, device: str, **kw: object) -> str | None:
    settings = StackSettings(port=0, vllm_port=0, device=device, run_dir=tmp_path, **kw)
    argv = vllm_argv(settings, tmp_path, 8000, device)
    return argv[argv.index("--block-size") + 1] if "--block-size" in argv else None


def test_cuda_defaults_to_the_xattention_block(tmp_path: Path) -> None:
    assert _block_size(tmp_path, "cuda") == "128"
    assert _block_size(tmp_path, "cuda", xattn={"block_size": 64}) == "64"


def test_an_explicit_block_size_wins(tmp_path: Path) -> None:
    assert _block_size(tmp_path, "cuda", block_size=16) == "16"
    assert _block_size(tmp_path, "cpu", block_size=32) == "32"


def test_cpu_leaves_it_to_vllm(tmp_path: Path) -> None:
    assert _block_size(tmp_path, "cpu") is None
