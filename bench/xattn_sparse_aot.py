"""Compile the sparse attention kernels for sm_90 on any machine (no GPU): what each variant costs on chip.

For each variant of ``bench/xattn_sparse_variants.py`` (32 q / 8 KV heads -> GROUP 4, head dim 128, block
128, bf16) it compiles the Triton kernel ahead of time for an H100/H200 target and reports shared memory,
registers and spills (``ptxas -v`` on the PTX, the ptxas that ships with Triton), the wgmma / TMA
instruction counts, and the warps the kernel runs with (more than ``num_warps`` when Triton's warp
specialisation was applied). Plus the warp-specialised TMA variants, which the GPU bench leaves out.

    PYTHONPATH=/tmp/tri python bench/xattn_sparse_aot.py            # Triton installed, no GPU needed
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from xattn_sparse_variants import VARIANTS

EXTRA = {
    "tma-ws-w8-s2": dict(kernel="tma", num_stages=2, warp_specialize=True),
    "tma-ws-w4-s3": dict(kernel="tma", num_warps=4, num_stages=3, warp_specialize=True),
}


def compile_variant(tiles: Any, group: int = 4, block: int = 128, d: int = 128) -> dict[str, Any]:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from attention_backend.kernels.sparse_attention import _block_sparse_attn_kernel
    from attention_backend.kernels.sparse_attention_tma import _block_sparse_attn_tma_kernel

    ptrs = dict(q_ptr="*bf16", o_ptr="*bf16", k_ptr="*bf16", v_ptr="*bf16", bt_ptr="*i32", idx_ptr="*i32",
                cnt_ptr="*i32", scale_log2="fp32")  # fmt: skip
    if tiles.kernel == "tma":
        fn, bn = _block_sparse_attn_tma_kernel, tiles.bn or block
        consts = dict(GROUP=group, B=block, D=d, BN=bn, WARP_SPECIALIZE=tiles.warp_specialize, QK_AHEAD=tiles.qk_ahead)
        ptrs.update(q_desc=f"tensordesc<bf16[{block},{d}]>", k_desc=f"tensordesc<bf16[1,{bn},1,{d}]>",
                    v_desc=f"tensordesc<bf16[1,{bn},1,{d}]>")  # fmt: skip
    else:
        fn, consts = _block_sparse_attn_kernel, dict(GROUP=group, B=block, D=d, PAGE_ALIGNED=True)
    sig = {n: ptrs.get(n, "constexpr" if n in consts else "i32") for n in fn.arg_names}
    src = ASTSource(fn=fn, signature=sig, constexprs=consts)
    try:
        k = triton.compile(src, target=GPUTarget("cuda", 90, 32),
                           options=dict(num_warps=tiles.num_warps, num_stages=tiles.num_stages))  # fmt: skip
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    ptx = k.asm["ptx"]
    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    with tempfile.NamedTemporaryFile("w", suffix=".ptx") as f:
        f.write(ptx)
        f.flush()
        log = subprocess.run([str(ptxas), "-arch=sm_90a", "-v", f.name, "-o", "/dev/null"],
                             capture_output=True, text=True).stderr  # fmt: skip
    regs = re.search(r"Used (\d+) registers", log)
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    return {
        "shared_kb": k.metadata.shared / 1024, "warps": k.metadata.num_warps,
        "registers": int(regs.group(1)) if regs else None,
        "spill_bytes": int(spill.group(1)) + int(spill.group(2)) if spill else None,
        "wgmma": ptx.count("wgmma.mma_async"), "tma_copies": ptx.count("cp.async.bulk.tensor"),
    }  # fmt: skip


def main() -> None:
    from attention_backend.kernels import AttnTiles

    print("| variant | tiles | shared KB | warps | registers | spill bytes | wgmma | TMA copies |")
    print("|---|---|---|---|---|---|---|---|")
    for name, fields in {**VARIANTS, **EXTRA}.items():
        r = compile_variant(AttnTiles(**fields))
        if "error" in r:
            print(f"| {name} | {fields} | compile error: {r['error']} ||||||")
            continue
        print(f"| {name} | {fields} | {r['shared_kb']:.0f} | {r['warps']} | {r['registers']} | {r['spill_bytes']} "
              f"| {r['wgmma']} | {r['tma_copies']} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
