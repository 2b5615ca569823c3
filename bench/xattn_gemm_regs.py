"""Registers, spills and occupancy of the library-GEMM estimate's kernels on sm_90, without a GPU.

``kernels.estimate_gemm._lse_from_logits_kernel`` streams bf16 logits once (about 2 GB per 128K prefill at
S = 16): it is memory-bound, so the warps each SM can keep in flight decide its speed. Triton compiles the
kernel for ``sm_90a`` here on the CPU and the ptxas that ships with Triton reports what each launch shape
of ``xattn_est_sweep.GEMM_VARIANTS`` costs in registers; resident CTAs per SM follow from the 64K-register
file (and the 64-warp limit). The sweep times these shapes on a card; this says which ones can hide memory
latency before any device time is spent. The operand packing kernel (bf16 and fp8, head dims 64 / 128 / 256,
S = 8 / 16) is compiled the same way, so both new kernels are known to build for Hopper before a device call. Needs Triton 3.6 importable (the CPU venv has none:
``pip install --target /tmp/tri triton==3.6.0`` and ``PYTHONPATH=/tmp/tri``).

    PYTHONPATH=/tmp/tri:. .venv/bin/python bench/xattn_gemm_regs.py
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from xattn_est_sweep import BLOCK, GEMM_VARIANTS

from attention_backend.fp8 import FP8_RANGE
from attention_backend.kernels.estimate_gemm import _lse_from_logits_kernel, _pack_rows_kernel

SM90 = GPUTarget("cuda", 90, 32)
REGS_PER_SM, MAX_WARPS_PER_SM = 65536, 64
GROUP, STRIDE = 4, 16  # Llama-3.1-8B: 32 query heads over 8 KV heads; the sweep's stride


def signature(kernel: triton.JITFunction, types: dict[str, str], consts: dict[str, object]) -> dict[str, str]:
    return {n: "constexpr" if n in consts else types.get(n, "i32") for n in kernel.arg_names}


def launch_attrs(kernel: triton.JITFunction, consts: dict[str, object]) -> dict[tuple[int], list[list[object]]]:
    """What a launch specialises on: pointers 16-byte aligned (torch's allocations) and every integer argument left
    out of ``do_not_specialize`` divisible by 16 (the launchers here pass only such values there)."""
    return {(i,): [["tt.divisibility", 16]] for i, p in enumerate(kernel.params)
            if p.name not in consts and not p.do_not_specialize}  # fmt: skip


def compile_sm90(kernel: triton.JITFunction, types: dict[str, str], consts: dict[str, object], warps: int) -> dict[str, int]:
    """ptxas's counts for ``kernel`` compiled for sm_90a as a launch specialises it (raises where Triton or ptxas cannot
    build it), plus the PTX's widest global load (bytes a thread loads in one instruction) and its warp shuffles."""
    src = ASTSource(kernel, signature(kernel, types, consts), consts, launch_attrs(kernel, consts))
    compiled = triton.compile(src, target=SM90, options={"num_warps": warps})
    ptx = compiled.asm["ptx"]
    stats = ptxas_stats(ptx)
    ctas = min(REGS_PER_SM // (stats["registers"] * 32 * warps), MAX_WARPS_PER_SM // warps)
    return {**stats, "ctas_per_sm": ctas, "warps_per_sm": ctas * warps, "load_bytes": widest_load(ptx),
            "shuffles": len(re.findall(r"\bshfl\.sync", ptx))}  # fmt: skip


def widest_load(ptx: str) -> int:
    """Bytes of the widest ``ld.global`` in ``ptx`` (``.v4.b32`` = 16)."""
    widths = [int(v or 1) * int(b) // 8 for v, b in re.findall(r"ld\.global(?:\.[a-zA-Z0-9_:]+)*?(?:\.v(\d))?\.[bfsu](\d+)", ptx)]
    return max(widths, default=0)


def ptxas_stats(ptx: str) -> dict[str, int]:
    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    with tempfile.NamedTemporaryFile("w", suffix=".ptx") as f:
        f.write(ptx)
        f.flush()
        done = subprocess.run([str(ptxas), "-v", "--gpu-name", "sm_90a", f.name, "-o", "/dev/null"],
                              capture_output=True, text=True, check=True)  # fmt: skip
    num = {k: int(m.group(1)) for k, pat in (("registers", r"Used (\d+) registers"), ("spill_stores", r"(\d+) bytes spill stores"),
                                             ("spill_loads", r"(\d+) bytes spill loads")) if (m := re.search(pat, done.stderr))}  # fmt: skip
    if "registers" not in num:
        raise RuntimeError(f"ptxas printed no register count:\n{done.stderr}")
    return num


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/xattn_kernels/gemm_regs_sm90")
    args = ap.parse_args()
    rows = []
    # (bm, bn, warps, epilogue tiles a program) of every variant; a variant tuple's 8th entry is its epilogue tiles
    shapes = sorted({(v[2], v[3], v[4], v[7] if len(v) > 7 else 1) for v in GEMM_VARIANTS})
    for bm, bn, warps, cols in shapes:
        consts = {"GROUP": GROUP, "S": STRIDE, "R": BLOCK // STRIDE, "BM": bm, "BN": bn, "COLS": cols}
        types = {"logits_ptr": "*bf16", "lse_ptr": "*fp32", "scale_log2": "fp32"}
        rows.append({"bm": bm, "bn": bn, "num_warps": warps, "epilogue_cols": cols,
                     "logits_per_thread": bm * bn // (32 * warps),
                     **compile_sm90(_lse_from_logits_kernel, types, consts, warps)})  # fmt: skip
    print(f"{'epilogue':>12} {'tiles':>5} {'warps':>5} {'elem/thr':>8} {'regs':>5} {'spill B':>8} {'CTAs/SM':>7} {'warps/SM':>8}"
          f" {'load B':>6} {'shfl':>5}")  # fmt: skip
    for r in rows:
        print(f"{r['bm']:>5}x{r['bn']:<6} {r['epilogue_cols']:>5} {r['num_warps']:>5} {r['logits_per_thread']:>8} "
              f"{r['registers']:>5} {r['spill_stores']:>8} {r['ctas_per_sm']:>7} {r['warps_per_sm']:>8} {r['load_bytes']:>6} "
              f"{r['shuffles']:>5}")  # fmt: skip
    pack = []
    for fp8 in (False, True):
        for stride, d in ((8, 128), (16, 64), (16, 128), (16, 256)):
            sdp = triton.next_power_of_2(stride * d)
            consts = {"GROUP": GROUP, "S": stride, "D": d, "RB": max(1, 8192 // sdp), "REVERSE": True, "FP8": fp8,
                      "RANGE": FP8_RANGE, "SDP": sdp}  # fmt: skip  (as estimate_gemm.pack_rows launches it)
            out_t = "*fp8e4nv" if fp8 else "*bf16"
            types = {"x_ptr": "*bf16", "out_ptr": out_t, "scale_ptr": "*fp32" if fp8 else out_t}
            pack.append({"fp8": fp8, "stride": stride, "head_dim": d, **compile_sm90(_pack_rows_kernel, types, consts, 4)})
    print(f"{'pack':>12} {'S':>5} {'d':>8} {'regs':>5} {'spill B':>8} {'CTAs/SM':>7} {'warps/SM':>8} {'load B':>6} {'shfl':>5}")
    for r in pack:
        print(f"{'fp8' if r['fp8'] else 'bf16':>12} {r['stride']:>5} {r['head_dim']:>8} {r['registers']:>5} "
              f"{r['spill_stores']:>8} {r['ctas_per_sm']:>7} {r['warps_per_sm']:>8} {r['load_bytes']:>6} {r['shuffles']:>5}")  # fmt: skip
    out = Path(args.out).with_suffix(".json")
    meta = {"target": "sm_90a", "triton": triton.__version__, "group": GROUP, "stride": STRIDE, "block": BLOCK}
    out.write_text(json.dumps({"meta": meta, "epilogue": rows, "pack": pack}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
