"""Session-aware eviction inside vLLM (CPU, the packaged model, through the router): issue 15, must-have 2.

    flock /tmp/xedge-heavy.lock timeout 1500 .venv/bin/python bench/prefix_cache_sessions_vllm.py

For each policy (lru = stock vLLM's order, session, guarded) one `xedge serve` stack (vLLM with a KV cache
of 64 blocks of 32 tokens, the router in front) runs two phases: K edge sessions whose contexts (480
random tokens each, created with prefill) together exceed the KV cache 2x, then 4x (fresh sessions; the
2x ones are DELETEd first), each escalating ROUNDS times in rotation, each escalation appending 32 new
tokens and asking the cloud for 1 token. Per escalation, from vLLM's own usage as the router returns it:
prompt tokens computed (prompt - cached), and the router call's latency. Target: computed tokens per
escalation <= 2 x (new tokens + one block) = 128 at 2x. Writes
bench/results/prefix_cache/prefix_cache_sessions_vllm.{json,png} and prints a table with ratios to lru.
"""

from __future__ import annotations

import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from client_edge import EdgeClient, new_request_id
from client_edge.protocol import CreateSessionRequest, EscalateRequest, PrefixRef, token_prefix_hash

RESULTS = Path(__file__).resolve().parent / "results" / "prefix_cache"
POLICIES = ("lru", "session", "guarded")
BLOCK = 32
NUM_BLOCKS = 64
CONTEXT = 480
NEW = 32
ROUNDS = 4
TARGET = 2 * (NEW + BLOCK)


def _base(ids: list[int]) -> PrefixRef:
    return PrefixRef(length=len(ids), hash=token_prefix_hash(ids))


def phase(edge: EdgeClient, fp: str, over: int, rng: random.Random) -> dict[str, Any]:
    k = over * NUM_BLOCKS * BLOCK // CONTEXT
    contexts: dict[str, list[int]] = {}
    for _ in range(k):
        ids = [rng.randrange(1000, 40000) for _ in range(CONTEXT)]
        resp = edge.create_session(
            CreateSessionRequest(
                request_id=new_request_id(), tokenizer_fingerprint=fp, prompt_token_ids=ids, prefill=True
            )
        )
        contexts[resp.state.session_id] = ids
    computed, cached, latency_ms = [], [], []
    for _ in range(ROUNDS):
        for sid, ids in contexts.items():
            new = [rng.randrange(1000, 40000) for _ in range(NEW)]
            body = EscalateRequest(request_id=new_request_id(), base=_base(ids), new_token_ids=new, k=1)
            t0 = time.perf_counter()
            reply = edge.escalate(sid, body)
            latency_ms.append((time.perf_counter() - t0) * 1e3)
            ids.extend(new)
            if reply.usage is None:
                raise RuntimeError("the router returned no usage for an escalation")
            computed.append(reply.usage.computed_tokens)
            cached.append(reply.usage.cached_tokens)
    for sid in contexts:
        edge.delete_session(sid)
    prompt = [c + h for c, h in zip(computed, cached, strict=True)]
    lat = sorted(latency_ms)
    return {
        "oversubscription": over,
        "sessions": k,
        "escalations": len(computed),
        "mean_context_tokens": round(statistics.fmean(prompt), 1),
        "contexts_over_cache": round(k * statistics.fmean(prompt) / (NUM_BLOCKS * BLOCK), 2),
        "computed_per_escalation_mean": round(statistics.fmean(computed), 1),
        "computed_per_escalation_p50": sorted(computed)[len(computed) // 2],
        "cached_share": round(sum(cached) / sum(prompt), 4),
        "latency_ms_p50": round(lat[len(lat) // 2], 1),
        "latency_ms_p99": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1),
        "meets_target": statistics.fmean(computed) <= TARGET,
        "computed": computed,
        "latency_ms": [round(x, 1) for x in latency_ms],
    }


def run_policy(policy: str, say: Any) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from client_edge.runner.transformers_runner import tokenizer_fingerprint
    from server.launch.stack import Stack
    from server.models.store import ensure_default_model
    from server.settings import StackSettings

    model_dir = ensure_default_model()
    fp = tokenizer_fingerprint(AutoTokenizer.from_pretrained(str(model_dir)))
    with tempfile.TemporaryDirectory(prefix="xedge-sessions-") as run_dir:
        settings = StackSettings(port=0, vllm_port=0, device="cpu", run_dir=Path(run_dir), kv_cache_gib=0.5,
                                 block_size=BLOCK, num_blocks_override=NUM_BLOCKS, max_model_len=1024,
                                 prefix_cache_policy=policy)  # fmt: skip
        t0 = time.perf_counter()
        with Stack(settings, log=say) as stack:
            start_s = time.perf_counter() - t0
            edge = EdgeClient(stack.router_url, timeout=httpx.Timeout(300.0), max_retries=0)
            try:
                rng = random.Random(0)  # the same sessions and tokens for every policy
                phases = [phase(edge, fp, over, rng) for over in (2, 4)]
            finally:
                edge.close()
    return {"policy": policy, "stack_start_s": round(start_s, 1), "phases": phases}


def main() -> int:
    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    start = time.perf_counter()
    runs = [run_policy(p, say) for p in POLICIES]
    seconds = time.perf_counter() - start
    lru = {ph["oversubscription"]: ph for ph in runs[0]["phases"]}
    print(
        f"target: <= {TARGET} prompt tokens computed per escalation at 2x (2 x (new {NEW} + one {BLOCK}-token block))"
    )
    print(f"{'policy':<8} {'over':>4} {'K':>3} {'computed/esc':>12} {'p50':>5} {'vs lru':>7} {'cached':>7} "
          f"{'lat p50 ms':>10} {'p99 ms':>8}")  # fmt: skip
    for run in runs:
        for ph in run["phases"]:
            base = lru[ph["oversubscription"]]["computed_per_escalation_mean"]
            ph["computed_vs_lru"] = round(ph["computed_per_escalation_mean"] / base, 3) if base else None
            print(f"{run['policy']:<8} {ph['oversubscription']:>3}x {ph['sessions']:>3} "
                  f"{ph['computed_per_escalation_mean']:>12.1f} {ph['computed_per_escalation_p50']:>5} "
                  f"{ph['computed_vs_lru'] or 0:>7.3f} {ph['cached_share']:>7.3f} {ph['latency_ms_p50']:>10.1f} "
                  f"{ph['latency_ms_p99']:>8.1f}")  # fmt: skip
    payload = {
        "command": "flock /tmp/xedge-heavy.lock timeout 1500 .venv/bin/python bench/prefix_cache_sessions_vllm.py",
        "seconds": round(seconds, 1),
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        "setup": {
            "block_tokens": BLOCK,
            "num_blocks": NUM_BLOCKS,
            "context_tokens": CONTEXT,
            "new_tokens": NEW,
            "rounds": ROUNDS,
            "k": 1,
            "target_tokens": TARGET,
        },  # fmt: skip
        "runs": runs,
        "notes": "notes.md",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "prefix_cache_sessions_vllm.json"
    out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"{seconds:.1f} s; wrote {out} and {_plot(runs, RESULTS / 'prefix_cache_sessions_vllm.png')}")
    return 0


def _plot(runs: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.25
    for i, run in enumerate(runs):
        xs = [j + i * width for j in range(len(run["phases"]))]
        left.bar(xs, [ph["computed_per_escalation_mean"] for ph in run["phases"]], width, label=run["policy"])
        right.bar(xs, [ph["latency_ms_p50"] for ph in run["phases"]], width, label=run["policy"])
    for ax, label in (
        (left, "prompt tokens computed per escalation (mean)"),
        (right, "escalation latency p50 (ms)"),
    ):
        ax.set_xticks([j + width for j in range(len(runs[0]["phases"]))])
        ax.set_xticklabels(
            [f"{ph['oversubscription']}x ({ph['sessions']} sessions)" for ph in runs[0]["phases"]]
        )
        ax.set_ylabel(label, fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    left.axhline(TARGET, color="grey", linestyle=":", label=f"target {TARGET}")
    left.legend(fontsize=8)
    fig.suptitle("edge sessions escalating in rotation, vLLM CPU through the router")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    sys.exit(main())
