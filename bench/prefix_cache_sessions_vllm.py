"""Session-aware eviction inside vLLM (CPU, the packaged model, through the router): issue 15, must-have 2.

    flock /tmp/xedge-heavy.lock timeout 1500 .venv/bin/python bench/prefix_cache_sessions_vllm.py
    .venv/bin/python bench/prefix_cache_sessions_vllm.py --render-only   # the PNG from the JSON
    .venv/bin/python bench/prefix_cache_sessions_vllm.py --only lru+tier256   # a smoke run, nothing written

For each policy (lru = stock vLLM's order, session, guarded) one `xedge serve` stack (vLLM with a KV cache
of 64 blocks of 32 tokens, the router in front) runs two phases: K edge sessions whose contexts (480
random tokens each, created with prefill) together exceed the KV cache 2x, then 4x (fresh sessions; the
2x ones are DELETEd first), each escalating ROUNDS times in rotation, each escalation appending 32 new
tokens and asking the cloud for 1 token. Per escalation, from vLLM's own usage as the router returns it:
prompt tokens computed (prompt - cached), and the router call's latency. Target: computed tokens per
escalation <= 2 x (new tokens + one block) = 128 at 2x. After each phase the engine's own policy
figures (the stats marker's ``policy_stats``: sessions protected / idled, evictions per step) are kept.

The same request sequence is also replayed in the simulator (a cache of the engine's usable blocks) with
lru, session, guarded and belady (the offline optimum), next to the capacity bound of a rotation: between
two escalations of a session the K - 1 others each hold their whole prompt, so the blocks kept for the
other sessions' next escalations never exceed the cache minus that; the mean hit per escalation is at
most about (C - P) / (K - 1) blocks (C usable blocks, P the mean prompt in blocks), whatever the policy
(``capacity_bound`` computes it from the exact sequence). Writes
bench/results/prefix_cache/prefix_cache_sessions_vllm.{json,png} and prints tables with ratios to lru.
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
from client_edge.protocol.engine_xargs import RequestMeta
from client_edge.protocol.status_marker import read_markers

RESULTS = Path(__file__).resolve().parent / "results" / "prefix_cache"
POLICIES = ("lru", "session", "session-due", "guarded")
TIER_BLOCKS = 256  # the host KV tier (server.engine.kv_tier): 4x the engine's cache, in host memory
# (engine eviction policy, host tier blocks): each policy alone, then lru and session-due with the tier
CONFIGS = tuple((p, 0) for p in POLICIES) + (("lru", TIER_BLOCKS), ("session-due", TIER_BLOCKS))
SIM_POLICIES = ("lru", "session", "session-due", "guarded", "belady")
BLOCK = 32
NUM_BLOCKS = 64
CONTEXT = 480
NEW = 32
ROUNDS = 4
TARGET = 2 * (NEW + BLOCK)
USABLE_BLOCKS = NUM_BLOCKS - 1  # vLLM's block 0 is its null block
STATS_WAIT_S = 1.5
SIM_REQUEST_S = 1.3  # simulated time per request (the engine's escalation latency, about)


def _base(ids: list[int]) -> PrefixRef:
    return PrefixRef(length=len(ids), hash=token_prefix_hash(ids))


def plan(over: int, rng: random.Random) -> tuple[list[list[int]], list[tuple[int, list[int]]]]:
    """K session contexts (over-subscription ``over``) and the escalations, (session, new tokens), in order."""
    k = over * NUM_BLOCKS * BLOCK // CONTEXT
    contexts = [[rng.randrange(1000, 40000) for _ in range(CONTEXT)] for _ in range(k)]
    escalations = [
        (s, [rng.randrange(1000, 40000) for _ in range(NEW)]) for _ in range(ROUNDS) for s in range(k)
    ]
    return contexts, escalations


def phase(edge: EdgeClient, fp: str, over: int, rng: random.Random, status_dir: Path) -> dict[str, Any]:
    contexts, escalations = plan(over, rng)
    sim = simulate(contexts, escalations)
    sids = []
    for ids in contexts:
        resp = edge.create_session(
            CreateSessionRequest(
                request_id=new_request_id(),
                tokenizer_fingerprint=fp,
                prompt_token_ids=list(ids),
                prefill=True,
            )
        )
        sids.append(resp.state.session_id)
    computed, cached, latency_ms = [], [], []
    ids_of = [list(ids) for ids in contexts]
    for s, new in escalations:
        ids = ids_of[s]
        body = EscalateRequest(request_id=new_request_id(), base=_base(ids), new_token_ids=new, k=1)
        t0 = time.perf_counter()
        reply = edge.escalate(sids[s], body)
        latency_ms.append((time.perf_counter() - t0) * 1e3)
        ids.extend(new)
        if reply.usage is None:
            raise RuntimeError("the router returned no usage for an escalation")
        computed.append(reply.usage.computed_tokens)
        cached.append(reply.usage.cached_tokens)
    engine_stats = _policy_stats(status_dir, time.time())
    tier_stats = _tier_stats(status_dir)
    for sid in sids:
        edge.delete_session(sid)
    k = len(contexts)
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
        "engine_policy_stats": engine_stats,
        "host_tier_stats": tier_stats,
        "simulated": sim,
        "computed": computed,
        "latency_ms": [round(x, 1) for x in latency_ms],
    }


def _policy_stats(status_dir: Path, after: float) -> dict[str, Any]:
    """The engine policy's own figures from a stats marker written after ``after`` (rewritten every
    second, docs/DEVELOPING.md "Plugin status markers"); {} when none comes within 5 s."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        for m in read_markers(status_dir, "prefix_cache.stats.*.json"):
            if m.path.stat().st_mtime > after:
                return dict(m.detail.get("policy_stats") or {})
        time.sleep(0.2)
    return {}


def _tier_stats(status_dir: Path) -> dict[str, Any]:
    """The host tier's counters so far (``kv_tier.stats``, cumulative over the stack's phases); {} without one."""
    time.sleep(STATS_WAIT_S)  # the engine rewrites the marker at most once a second, on a scheduler step
    markers = read_markers(status_dir, "kv_tier.stats.*.json")
    return dict(markers[-1].detail) if markers else {}


def simulate(contexts: list[list[int]], escalations: list[tuple[int, list[int]]]) -> dict[str, Any]:
    """The phase's request sequence in the simulator (``USABLE_BLOCKS`` blocks): prompt tokens computed
    per escalation under each of ``SIM_POLICIES``, and the rotation's capacity bound (module docstring)."""
    from server.engine.prefix_cache.registry import policy_class
    from server.research.cache_sim.replay import replay
    from server.research.cache_sim.trace import Trace, prefix_keys

    k = len(contexts)
    ids_of = [list(ids) for ids in contexts]
    requests = [(s, list(ids)) for s, ids in enumerate(ids_of)]
    for s, new in escalations:
        ids_of[s].extend(new)
        requests.append((s, list(ids_of[s])))
    paths: dict = {}
    blocks = [prefix_keys((tuple(ids[j * BLOCK : (j + 1) * BLOCK]) for j in range(len(ids) // BLOCK)), paths)
              for _, ids in requests]  # fmt: skip
    metas = [RequestMeta(category="edge-session", session=f"s{s}", session_ttl_s=600.0) for s in range(k)]
    trace = Trace(
        "mooncake",
        BLOCK,
        [i * SIM_REQUEST_S for i in range(len(requests))],
        [len(ids) for _, ids in requests],
        [1] * len(requests),
        blocks,
        [metas[s] for s, _ in requests],
    )
    out: dict[str, Any] = {"capacity_blocks": USABLE_BLOCKS}
    for name in SIM_POLICIES:
        policy = policy_class(name, allow_oracle=True)(USABLE_BLOCKS, BLOCK)
        hits = replay(trace, policy, record=True).request_hit_tokens or []
        # vLLM computes at least a prompt's last token: a hit stops one block short of a whole prompt
        cost = [n - min(h, (n - 1) // BLOCK * BLOCK) for (_, ids), h, n in zip(requests, hits, trace.input_tokens,
                                                                                strict=True)][k:]  # fmt: skip
        out[name] = round(statistics.fmean(cost), 1)
    out.update(capacity_bound(requests, k))
    return out


def capacity_bound(requests: list[tuple[int, list[int]]], k: int) -> dict[str, float]:
    """What no policy beats on this sequence (``server/research/cache_sim/capacity_bound.py``), per
    escalation. With k = 1 a request ends with its prefill step: no block is allocated for the decoded
    token, so the running request holds exactly its prompt."""
    from server.research.cache_sim.capacity_bound import max_hit_blocks

    prompts = [len(ids) // BLOCK for _, ids in requests]
    hits = max_hit_blocks([(str(s), p) for (s, _), p in zip(requests, prompts, strict=True)], USABLE_BLOCKS)
    escalations = len(requests) - k
    return {
        "bound_hit_blocks_per_escalation": round(hits / escalations, 2),
        "bound_computed_per_escalation": round(BLOCK * (sum(prompts[k:]) - hits) / escalations, 1),
    }


def config_label(policy: str, tier: int) -> str:
    return f"{policy}+tier{tier}" if tier else policy


def run_policy(policy: str, tier: int, say: Any) -> dict[str, Any]:
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
                                 prefix_cache_policy=policy, kv_host_tier_blocks=tier)  # fmt: skip
        t0 = time.perf_counter()
        with Stack(settings, log=say) as stack:
            start_s = time.perf_counter() - t0
            edge = EdgeClient(stack.router_url, timeout=httpx.Timeout(300.0), max_retries=0)
            try:
                rng = random.Random(0)  # the same sessions and tokens for every policy
                phases = [phase(edge, fp, over, rng, stack.status_dir) for over in (2, 4)]
            finally:
                edge.close()
    return {"policy": config_label(policy, tier), "engine_policy": policy, "host_tier_blocks": tier,
            "stack_start_s": round(start_s, 1), "phases": phases}  # fmt: skip


def main() -> int:
    if sys.argv[1:] == ["--render-only"]:  # redraw the PNG from the committed JSON
        runs = json.loads((RESULTS / "prefix_cache_sessions_vllm.json").read_text())["runs"]
        print(f"wrote {_plot(runs, RESULTS / 'prefix_cache_sessions_vllm.png')}")
        return 0

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    configs = CONFIGS
    if sys.argv[1:2] == ["--only"]:  # a smoke run of some configurations: printed, the results are not replaced
        configs = tuple(c for c in CONFIGS if config_label(*c) in sys.argv[2].split(","))
        if not configs:
            print(f"--only: expected some of {[config_label(*c) for c in CONFIGS]}", file=sys.stderr)
            return 2
    start = time.perf_counter()
    runs = [run_policy(p, tier, say) for p, tier in configs]
    if configs != CONFIGS:
        for run in runs:
            for ph in run["phases"]:
                print(run["policy"], ph["oversubscription"], ph["computed_per_escalation_mean"], ph["cached_share"],
                      ph["latency_ms_p50"], ph["host_tier_stats"])  # fmt: skip
        return 0
    seconds = time.perf_counter() - start
    lru = {ph["oversubscription"]: ph for ph in runs[0]["phases"]}
    print(
        f"target: <= {TARGET} prompt tokens computed per escalation at 2x (2 x (new {NEW} + one {BLOCK}-token block))"
    )
    print(f"{'policy':<17} {'over':>4} {'K':>3} {'computed/esc':>12} {'p50':>5} {'vs lru':>7} {'cached':>7} "
          f"{'lat p50 ms':>10} {'p99 ms':>8}")  # fmt: skip
    for run in runs:
        for ph in run["phases"]:
            base = lru[ph["oversubscription"]]["computed_per_escalation_mean"]
            ph["computed_vs_lru"] = round(ph["computed_per_escalation_mean"] / base, 3) if base else None
            print(f"{run['policy']:<17} {ph['oversubscription']:>3}x {ph['sessions']:>3} "
                  f"{ph['computed_per_escalation_mean']:>12.1f} {ph['computed_per_escalation_p50']:>5} "
                  f"{ph['computed_vs_lru'] or 0:>7.3f} {ph['cached_share']:>7.3f} {ph['latency_ms_p50']:>10.1f} "
                  f"{ph['latency_ms_p99']:>8.1f}")  # fmt: skip
    print("\nthe same sequences in the simulator (capacity bound: what no policy can beat in this rotation)")
    print(
        f"{'over':>4} {'K':>3} "
        + " ".join(f"{p:>8}" for p in SIM_POLICIES)
        + f" {'bound':>8} {'engine session':>14}"
    )
    session_phases = {
        ph["oversubscription"]: ph for run in runs if run["policy"] == "session" for ph in run["phases"]
    }
    for ph in runs[0]["phases"]:
        sim = ph["simulated"]
        engine = session_phases.get(ph["oversubscription"], {}).get(
            "computed_per_escalation_mean", float("nan")
        )
        print(f"{ph['oversubscription']:>3}x {ph['sessions']:>3} " + " ".join(f"{sim[p]:>8.1f}" for p in SIM_POLICIES)
              + f" {sim['bound_computed_per_escalation']:>8.1f} {engine:>14.1f}")  # fmt: skip
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
            "host_tier_blocks": TIER_BLOCKS,
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
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        xs = [j + i * width for j in range(len(run["phases"]))]
        left.bar(xs, [ph["computed_per_escalation_mean"] for ph in run["phases"]], width, label=run["policy"])
        right.bar(xs, [ph["latency_ms_p50"] for ph in run["phases"]], width, label=run["policy"])
    for ax, label in (
        (left, "prompt tokens computed per escalation (mean)"),
        (right, "escalation latency p50 (ms)"),
    ):
        ax.set_xticks([j + width * (len(runs) - 1) / 2 for j in range(len(runs[0]["phases"]))])
        ax.set_xticklabels(
            [f"{ph['contexts_over_cache']}x ({ph['sessions']} sessions)" for ph in runs[0]["phases"]]
        )
        ax.set_ylabel(label, fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    left.axhline(TARGET, color="grey", linestyle=":", label=f"target {TARGET}")
    span = (-width / 2, (len(runs) - 0.5) * width)
    for j, ph in enumerate(runs[0]["phases"]):  # the same sequence in the simulator: what no policy beats
        sim = ph["simulated"]
        for value, style, label in (
            (sim["belady"], "--", "belady, vLLM's cache alone (simulated)"),
            (sim["bound_computed_per_escalation"], "-", "capacity bound, vLLM's cache alone"),
        ):
            left.hlines(
                value,
                j + span[0],
                j + span[1],
                colors="black",
                linestyles=style,
                label=label if j == 0 else None,
            )
    left.legend(fontsize=6, loc="upper center", framealpha=0.9, ncol=2)
    left.set_ylim(0, 760)
    fig.suptitle("edge sessions escalating in rotation (contexts / KV cache), vLLM CPU through the router")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    sys.exit(main())
