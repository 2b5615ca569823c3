"""scripts/vllm_compat_check.py on the installed vLLM (every adapter's contract holds) and on a copy of
it with one patched method renamed and one flag gone (the check fails and names both)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from server.launch.vllm_cmd import VLLM_FLAGS, vllm_argv
from server.settings import StackSettings

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "vllm_compat_check.py"


def _installed_root() -> Path:
    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("vLLM is not installed")
    return Path(next(iter(spec.submodule_search_locations))).parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_installed_vllm_meets_every_adapter_contract(tmp_path: Path) -> None:
    out = tmp_path / "matrix.json"
    proc = _run(str(_installed_root()), "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(out.read_text())
    assert {r["adapter"] for r in rows} == {"attention", "prefix_cache", "launch", "verify", "kv_tier"}
    assert all(r["ok"] and not r["failures"] for r in rows)
    assert all(res["status"] in ("ok", "absent") for r in rows for res in r["results"])


def test_a_missing_method_and_flag_fail_the_check_by_name(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    shutil.copytree(
        _installed_root() / "vllm", root / "vllm", ignore=shutil.ignore_patterns("*.so", "__pycache__")
    )
    pool = root / "vllm/v1/core/block_pool.py"
    pool.write_text(pool.read_text().replace("def _maybe_evict_cached_block(", "def _evict_cached_block("))
    args = root / "vllm/engine/arg_utils.py"
    args.write_text(
        args.read_text().replace('"--enforce-eager"', '"--eager"').replace("enforce_eager:", "eager:")
    )
    proc = _run(str(root))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "MISSING vllm.v1.core.block_pool.BlockPool._maybe_evict_cached_block(self, block)" in proc.stdout
    assert "MISSING --enforce-eager" in proc.stdout
    assert "attention     ok" in proc.stdout  # the other adapters' contracts still hold


def test_every_flag_the_launch_passes_is_checked(tmp_path: Path) -> None:
    settings = StackSettings(
        port=0, vllm_port=0, device="cpu", run_dir=tmp_path, max_model_len=1024, block_size=32,
        num_blocks_override=40, xattn={"stride": 8}, kv_host_tier_blocks=64,
    )  # fmt: skip
    flags = {a for a in vllm_argv(settings, tmp_path, 8000, "cpu") if a.startswith("--")}
    assert flags == set(VLLM_FLAGS)
