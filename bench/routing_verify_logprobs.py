"""Can the verify endpoint apply the speculative rejection rule at any temperature / top-p on vLLM 0.32 CPU?
(issue 5, verify "with the standard rejection rule when sampling"; today only temperature 1, top_p 1.)

    flock /tmp/xedge-heavy.lock .venv/bin/python bench/routing_verify_logprobs.py

Two measurements on SmolLM2-135M-Instruct (float32, in-process vLLM, no plugins):
1. Exactness: vLLM's sampling distribution at a position (generation logprobs=-1 under
   --logprobs-mode processed_logprobs, i.e. after temperature and top-p) vs our own temperature/top-p
   applied to the raw full-vocabulary prompt logprobs (prompt_logprobs=-1) of the same position.
   Reported: total-variation distance and whether the top-p supports are identical.
   Checked on a short prompt (13 tokens) at several temperature / top-p settings.
2. Cost of full-vocabulary rows on this CPU: prompt_logprobs=-1 over a whole CSQA chat prompt (vLLM scores
   every prompt row: ``SamplingParams.prompt_logprob_start`` requires ``prompt_logprob_token_ids``, which
   requires the V2 model runner, and the completions API exposes neither), and one generated row with
   logprobs=-1.
Prints a table; writes bench/results/verify/routing_verify_logprobs.json.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_PLUGINS", "none")  # vLLM alone: nothing of xedge in the measured path

RESULTS = Path(__file__).resolve().parent / "results" / "verify"
SETTINGS = ((1.0, 1.0), (0.7, 1.0), (0.7, 0.9), (1.3, 0.8), (0.5, 0.95))


def tempered(raw: np.ndarray, temperature: float, top_p: float) -> np.ndarray:
    """softmax(raw / T) restricted to the smallest top set whose mass reaches top_p (vLLM's rule: a token
    is kept while the mass before it is < top_p), renormalised. ``raw``: full-vocabulary log-softmax."""
    z = raw.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    order = np.argsort(-p, kind="stable")
    before = np.cumsum(p[order]) - p[order]
    keep = np.zeros(p.shape, dtype=bool)
    keep[order[before < top_p]] = True
    q = np.where(keep, p, 0.0)
    return q / q.sum()


def _row(logprobs: dict, vocab: int) -> np.ndarray:
    out = np.full(vocab, -np.inf)
    for tok, lp in logprobs.items():
        out[tok] = lp.logprob
    return out


def main() -> None:
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from server.data_root import data_root
    from server.models.store import ensure_default_model
    from server.research.routing_eval.routing import load_items

    model = ensure_default_model()
    llm = LLM(model=str(model), dtype="float32", enforce_eager=True, max_logprobs=-1,
              logprobs_mode="processed_logprobs", kv_cache_memory_bytes=2**28, distributed_executor_backend="uni",
              max_model_len=1024, enable_prefix_caching=False)  # fmt: skip
    tok = llm.get_tokenizer()
    vocab = len(tok)
    item = load_items(data_root(), ("csqa_letter",), 1)[0]
    chat = tok.apply_chat_template([{"role": "user", "content": item.prompt}], add_generation_prompt=True,
                                   tokenize=True)  # fmt: skip
    chat = [int(t) for t in (chat if isinstance(chat, list) else chat["input_ids"])]
    short = tok.encode("Question: What is the capital of France?\nAnswer:")
    llm.generate(
        [TokensPrompt(prompt_token_ids=short)], SamplingParams(max_tokens=1), use_tqdm=False
    )  # warm-up
    t0 = time.perf_counter()
    llm.generate(
        [TokensPrompt(prompt_token_ids=chat)],
        SamplingParams(max_tokens=1, prompt_logprobs=-1),
        use_tqdm=False,
    )
    cost = {"csqa_chat_prompt_rows": len(chat) - 1, "full_vocab_prompt_logprobs_s": time.perf_counter() - t0}
    rows = []
    for temperature, top_p in SETTINGS:
        sp = SamplingParams(temperature=temperature, top_p=top_p, max_tokens=1, logprobs=-1, seed=1)
        t0 = time.perf_counter()
        gen = llm.generate([TokensPrompt(prompt_token_ids=short)], sp, use_tqdm=False)[0].outputs[0]
        t_gen = time.perf_counter() - t0
        theirs = np.exp(_row(gen.logprobs[0], vocab))
        ctx = short + [gen.token_ids[0]]
        t0 = time.perf_counter()
        full = llm.generate([TokensPrompt(prompt_token_ids=ctx)], SamplingParams(max_tokens=1, prompt_logprobs=-1),
                            use_tqdm=False)[0]  # fmt: skip
        t_full = time.perf_counter() - t0
        ours = tempered(_row(full.prompt_logprobs[-1], vocab), temperature, top_p)
        rows.append({
            "temperature": temperature, "top_p": top_p, "vocab": vocab,
            "support_vllm": int((theirs > 0).sum()), "support_ours": int((ours > 0).sum()),
            "support_equal": bool(((theirs > 0) == (ours > 0)).all()),
            "total_variation": float(0.5 * np.abs(ours - theirs).sum()),
            "max_abs_prob_difference": float(np.abs(ours - theirs).max()),
            "prompt_rows": len(ctx) - 1, "full_vocab_prompt_logprobs_s": t_full,
            "generation_logprobs_all_s": t_gen,
        })  # fmt: skip
    print(f"{'T':>4} {'top_p':>5} {'support vLLM/ours':>18} {'equal':>5} {'TV':>9} {'max |dp|':>9} "
          f"{'rows':>4} {'prompt lp s':>11} {'gen row s':>9}")  # fmt: skip
    for r in rows:
        print(f"{r['temperature']:>4} {r['top_p']:>5} {r['support_vllm']:>8}/{r['support_ours']:<9} "
              f"{r['support_equal']!s:>5} {r['total_variation']:>9.2e} {r['max_abs_prob_difference']:>9.2e} "
              f"{r['prompt_rows']:>4} {r['full_vocab_prompt_logprobs_s']:>11.2f} {r['generation_logprobs_all_s']:>9.2f}")  # fmt: skip
    print(
        f"full-vocabulary prompt logprobs over a CSQA chat prompt ({cost['csqa_chat_prompt_rows']} rows): "
        f"{cost['full_vocab_prompt_logprobs_s']:.1f} s"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "routing_verify_logprobs.json"
    out.write_text(json.dumps({"model": "SmolLM2-135M-Instruct (float32)", "vllm": __import__("vllm").__version__,
                               "machine": platform.processor() or platform.machine(), "rows": rows, "cost": cost}, indent=1))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
