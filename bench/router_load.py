"""Router under load (issue 16, must-have 4): N concurrent edge sessions against the router with the fake
engine (tests/fakes/engine.py), on real loopback HTTP, router in its own process.

    flock /tmp/xedge-heavy.lock .venv/bin/python bench/router_load.py [--sessions 100 1000] [--rounds 5]

The server process runs the router app (``create_app`` on the fake engine and tokenizer, default settings)
under uvicorn, plus one extra route, ``POST /_bench/direct``, that runs the same fake-engine call with no
router logic: the baseline on the same HTTP stack, so router - direct is what the router adds.

For each N:
1. N sessions are opened concurrently (``POST /v1/sessions``, token mode, 64-token prompts), one tenant each
   (N edge devices; ``X-Xedge-Tenant``, no keys);
2. probe (no queueing): ``--probe`` requests one at a time, alternating router ``escalate`` (k=4, 1 new
   token, on the N live sessions round-robin) and ``direct`` (the same engine call), so both see the same
   machine state; the target is p50(router) - p50(direct) <= 2 ms at N = 100;
3. load: every session runs ``--rounds`` escalations back to back, all N at once (closed loop);
   per-request latency p50 / p99 and throughput;
4. RSS of the server process: before the sessions, after opening them, after the load.
Prints a table; writes bench/results/router_load/router_load.{json,png}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "router_load"
sys.path.insert(0, str(ROOT))

PROMPT_LEN = 64
K = 4


def _serve(port: int) -> None:
    import uvicorn

    from router.app import create_app
    from router.engine.base import GenerateCall
    from router.settings import RouterSettings
    from tests.fakes.engine import FakeEngine, FakeTokenizer

    tok = FakeTokenizer()
    engine = FakeEngine(tok.vocab_size, max_model_len=4096)
    settings = RouterSettings(vllm_urls=["http://fake:1"], startup_timeout_s=0, log_level="warning")
    app = create_app(settings, engines=[engine], tokenizer=tok)

    @app.post("/_bench/direct")
    async def direct(body: dict) -> dict:
        result = await engine.generate(GenerateCall(prompt_ids=tuple(body["prompt"]), max_tokens=body["k"]))
        return {"tokens": [t.token_id for t in result.tokens], "usage": result.usage.__dict__}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", limit_concurrency=10_000, backlog=4096)


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _summary(ms: list[float]) -> dict[str, float]:
    return {"n": len(ms), "p50_ms": statistics.median(ms), "p99_ms": _pct(ms, 0.99), "mean_ms": statistics.fmean(ms)}


async def _run_level(url: str, n: int, rounds: int, probe: int, proc: psutil.Process) -> dict[str, Any]:
    from client_edge.protocol import token_prefix_hash
    from tests.fakes.engine import BOS, FakeTokenizer

    fp = FakeTokenizer().fingerprint
    limits = httpx.Limits(max_connections=n + 8, max_keepalive_connections=n + 8)
    rss = {"before_mib": proc.memory_info().rss / 2**20}
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as http:
        prompts = [[BOS, *[(3 + (i * 7 + j) % 40) for j in range(PROMPT_LEN - 1)]] for i in range(n)]
        t0 = time.perf_counter()
        # One tenant per edge session (the per-tenant cap on requests in flight is 64 by default).
        tenants = [{"X-Xedge-Tenant": f"edge-{i}"} for i in range(n)]
        replies = await asyncio.gather(*(
            http.post("/v1/sessions", headers=tenants[i],
                      json={"request_id": f"c{i}", "tokenizer_fingerprint": fp, "prompt_token_ids": p})
            for i, p in enumerate(prompts)
        ))  # fmt: skip
        open_s = time.perf_counter() - t0
        assert all(r.status_code == 201 for r in replies), {r.status_code for r in replies}
        sids = [r.json()["state"]["session_id"] for r in replies]
        committed = [list(p) for p in prompts]
        rss["sessions_open_mib"] = proc.memory_info().rss / 2**20
        counter = 0

        async def escalate(i: int) -> float:
            nonlocal counter
            counter += 1
            body = {"request_id": f"e{counter}", "base": {"length": len(committed[i]), "hash": token_prefix_hash(committed[i])},
                    "new_token_ids": [5], "k": K}  # fmt: skip
            t = time.perf_counter()
            r = await http.post(f"/v1/sessions/{sids[i]}/escalate", json=body, headers=tenants[i])
            ms = (time.perf_counter() - t) * 1e3
            assert r.status_code == 200, r.text
            committed[i].append(5)
            return ms

        async def direct(i: int) -> float:
            t = time.perf_counter()
            r = await http.post("/_bench/direct", json={"prompt": [*committed[i], 5], "k": K})
            ms = (time.perf_counter() - t) * 1e3
            assert r.status_code == 200, r.text
            return ms

        for i in range(min(20, n)):  # warm-up of both paths
            await escalate(i)
            await direct(i)
        probe_router, probe_direct = [], []
        for j in range(probe):
            probe_router.append(await escalate(j % n))
            probe_direct.append(await direct(j % n))

        async def session_loop(i: int) -> list[float]:
            return [await escalate(i) for _ in range(rounds)]

        t0 = time.perf_counter()
        per = await asyncio.gather(*(session_loop(i) for i in range(n)))
        load_s = time.perf_counter() - t0
        rss["after_load_mib"] = proc.memory_info().rss / 2**20
        for i, sid in enumerate(sids):
            await http.delete(f"/v1/sessions/{sid}", headers=tenants[i])
    load = [ms for xs in per for ms in xs]
    pr, pd = _summary(probe_router), _summary(probe_direct)
    return {
        "sessions": n,
        "open_s": open_s,
        "probe": {"router": pr, "direct": pd, "added_p50_ms": pr["p50_ms"] - pd["p50_ms"],
                  "ratio_p50": pr["p50_ms"] / pd["p50_ms"]},
        "load": {**_summary(load), "requests": len(load), "seconds": load_s, "requests_per_s": len(load) / load_s},
        "rss": {**rss, "growth_mib": rss["after_load_mib"] - rss["before_mib"],
                "per_session_kib": (rss["after_load_mib"] - rss["before_mib"]) * 1024 / n},
    }  # fmt: skip


def _plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = result["levels"]
    labels = [str(lv["sessions"]) for lv in levels]
    x = range(len(levels))
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(13, 4))
    w = 0.38
    a.bar([i - w / 2 for i in x], [lv["probe"]["direct"]["p50_ms"] for lv in levels], w, label="direct (same HTTP, no router)")
    a.bar([i + w / 2 for i in x], [lv["probe"]["router"]["p50_ms"] for lv in levels], w, label="router escalate k=4")
    a.axhline(2.0, color="grey", ls=":", lw=1)
    a.set(title="one request at a time: p50 (ms)", xlabel="live sessions", xticks=list(x), xticklabels=labels)
    a.legend(fontsize=8)
    b.bar([i - w / 2 for i in x], [lv["load"]["p50_ms"] for lv in levels], w, label="p50")
    b.bar([i + w / 2 for i in x], [lv["load"]["p99_ms"] for lv in levels], w, label="p99")
    b.set(title="all sessions at once: latency (ms)", xlabel="concurrent sessions", xticks=list(x), xticklabels=labels)
    b.legend(fontsize=8)
    c.bar(x, [lv["rss"]["growth_mib"] for lv in levels])
    c.set(title="router RSS growth (MiB)", xlabel="sessions", xticks=list(x), xticklabels=labels)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--probe", type=int, default=300)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    from server.launch.ports import free_port

    levels = []
    for n in args.sessions:  # a fresh server per level, so RSS growth is this level's
        port = free_port()
        server = mp.get_context("spawn").Process(target=_serve, args=(port,), daemon=True)
        server.start()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("router did not start")
            time.sleep(0.1)
        try:
            levels.append(asyncio.run(_run_level(url, n, args.rounds, args.probe, psutil.Process(server.pid))))
        finally:
            server.terminate()
            server.join(10)
    result = {
        "bench": "router_load",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "prompt_tokens": PROMPT_LEN, "k": K, "rounds": args.rounds, "probe_requests": args.probe,
        "levels": levels,
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "router_load.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(result, args.out / "router_load.png")
    print(f"{'sessions':>8} {'direct p50':>10} {'router p50':>10} {'added':>7} {'ratio':>6} | {'load p50':>8} {'p99':>8} {'req/s':>7} | {'RSS +MiB':>8} {'KiB/sess':>8}")
    for lv in levels:
        p, ld, r = lv["probe"], lv["load"], lv["rss"]
        print(f"{lv['sessions']:>8} {p['direct']['p50_ms']:>10.2f} {p['router']['p50_ms']:>10.2f} {p['added_p50_ms']:>7.2f} "
              f"{p['ratio_p50']:>6.2f} | {ld['p50_ms']:>8.1f} {ld['p99_ms']:>8.1f} {ld['requests_per_s']:>7.0f} | "
              f"{r['growth_mib']:>8.1f} {r['per_session_kib']:>8.1f}")  # fmt: skip
    print(f"wrote {args.out / 'router_load.json'} and router_load.png")


if __name__ == "__main__":
    main()
