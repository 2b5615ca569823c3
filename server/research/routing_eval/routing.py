"""`xedge eval routing`: task accuracy vs fraction of tokens escalated, for each gate at calibrated rates,
against small-only, cloud-only and random escalation at the same rates; cloud cost per escalation
(stateful deltas vs a measured stateless re-prefill); round trips, bytes and per-token time under
emulated network delay. One ``PairSpec`` (edge model, cloud model, session mode) per run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from os.path import commonprefix  # works on any sequences: token ids or characters
from pathlib import Path
from typing import Any

import httpx

from client_edge.client import EdgeClient
from client_edge.gates import create_gate
from client_edge.gates.base import Gate
from client_edge.gates.calibrate import calibrate
from client_edge.gates.random_gate import RandomGate
from client_edge.protocol import SessionMode
from client_edge.result import GenerationResult, TokenSource
from client_edge.retry import RetryPolicy
from client_edge.runner.transformers_runner import TransformersRunner
from client_edge.session import EdgeSession, SessionConfig
from server.research.routing_eval.delay import DelayTransport
from server.research.routing_eval.recorder import ScoreRecorder
from server.research.routing_eval.stateless import StatelessLink
from server.research.routing_eval.stats import wilson_interval
from server.research.routing_eval.tasks import Item, get_task

MAX_CLOUD_K = 64  # the router's default max_k


@dataclass(frozen=True)
class PairSpec:
    """Which models play edge and cloud; ``mode`` is ``token`` only when they share a tokenizer."""

    name: str
    description: str
    mode: SessionMode
    edge_model_dir: Path
    edge_keep_layers: tuple[int, ...] | None
    cloud_model_dir: Path


@dataclass(frozen=True)
class RoutingEvalConfig:
    tasks: tuple[str, ...] = ("csqa", "gsm8k")
    n_per_task: int = 4
    max_new_tokens: int = 64
    rates: tuple[float, ...] = (0.1, 0.3)
    gates: tuple[str, ...] = ("top1", "entropy", "rolling_entropy", "mlp")
    router_path: Path | None = None
    delays_ms: tuple[float, ...] = (0.0, 20.0, 100.0)
    delay_items: int = 2
    draft_len: int = 4
    stateless: bool = True
    speculative: bool = True
    seed: int = 0
    # Items right after the evaluated ones (a disjoint slice of the dev set) whose small-only pass sets the
    # gates' thresholds; 0 = calibrate on the evaluated items themselves (in-sample).
    calibration_items: int = 0

    def __post_init__(self) -> None:
        if self.n_per_task < 1 or self.max_new_tokens < 1 or self.delay_items < 0 or self.calibration_items < 0:
            raise ValueError("n_per_task and max_new_tokens must be >= 1, delay_items and calibration_items >= 0")
        if not all(0.0 < r < 1.0 for r in self.rates):
            raise ValueError(f"rates must lie in (0, 1), got {self.rates}")


@dataclass
class RunSummary:
    """One configuration over the evaluation items (all numbers per the items it ran on)."""

    label: str
    gate: str
    strategy: str
    link: str  # none | stateful | stateless
    target_rate: float | None
    threshold: float | None
    delay_ms: float
    items: int
    accuracy: float
    escalation_rate: float
    tokens: int
    cloud_tokens: int
    unverified: int
    requests: int
    round_trips_per_answer: float
    bytes_per_answer: float
    prompt_tokens_per_request: float
    computed_tokens_per_request: float
    cached_tokens_per_request: float
    token_time_p50_ms: float
    token_time_p95_ms: float
    per_item_correct: list[bool] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    correct: int = 0
    accuracy_ci95: tuple[float, float] = (float("nan"), float("nan"))  # Wilson interval
    answers: list[str | None] = field(default_factory=list)  # the answer each output gives (task's parser)
    # Same answer as cloud-only on the items both ran (filled by ``add_agreement``; None without cloud-only).
    agreement_with_cloud: float | None = None
    agreement_ci95: tuple[float, float] | None = None
    agreement_items: int = 0
    # Same output text as cloud-only (fraction of shared items), and the mean share of cloud-only's text
    # that each output reproduces from its start: answer-free views for answers cut off before their end.
    same_text_as_cloud: float | None = None
    text_prefix_agreement: float | None = None


def add_agreement(summaries: list[RunSummary]) -> None:
    """Fill each summary's agreement with the ``cloud-only`` answers: the fraction of items where both give
    the same (parsed, not None) answer. A model-quality-free view of how much of the cloud a config keeps."""
    cloud = next((s for s in summaries if s.label == "cloud-only"), None)
    if cloud is None or not cloud.answers:
        return
    for s in summaries:
        n = min(s.items, cloud.items, len(s.answers))
        same = sum(
            1 for a, b in zip(s.answers[:n], cloud.answers[:n], strict=True) if a is not None and a == b
        )
        s.agreement_with_cloud = same / n if n else None
        s.agreement_ci95 = wilson_interval(same, n) if n else None
        s.agreement_items = n
        pairs = list(zip(s.texts[:n], cloud.texts[:n], strict=True))
        if pairs:
            s.same_text_as_cloud = sum(a == b for a, b in pairs) / len(pairs)
            s.text_prefix_agreement = statistics.fmean(
                len(commonprefix([list(a), list(b)])) / len(b) if b else float(a == b) for a, b in pairs
            )


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def _escalated(r: GenerationResult) -> int:
    """Positions the cloud was asked about: gate firings, or every token the cloud wrote or checked (an
    escalation with k > 1 covers k positions)."""
    return max(r.escalated_positions, r.n_cloud + r.count(TokenSource.VERIFIED))


def summarise(label: str, gate: str, strategy: str, link: str, target: float | None, threshold: float | None,
              delay_ms: float, items: list[Item], results: list[GenerationResult]) -> RunSummary:  # fmt: skip
    correct = [get_task(it.task).score(r.text, it) for it, r in zip(items, results, strict=True)]
    answers = [get_task(it.task).answer(r.text, it) for it, r in zip(items, results, strict=True)]
    tokens = sum(len(r.token_ids) for r in results)
    req = sum(r.usage.requests for r in results)
    times = [t * 1000 for r in results for t in r.token_times_s]
    per_req = (lambda total: total / req) if req else (lambda total: 0.0)
    return RunSummary(
        label=label, gate=gate, strategy=strategy, link=link, target_rate=target, threshold=threshold,
        delay_ms=delay_ms, items=len(items), accuracy=sum(correct) / len(items),
        escalation_rate=sum(_escalated(r) for r in results) / max(1, tokens), tokens=tokens,
        cloud_tokens=sum(r.n_cloud for r in results), unverified=sum(r.n_unverified for r in results),
        requests=req, round_trips_per_answer=sum(r.round_trips for r in results) / len(items),
        bytes_per_answer=sum(r.bytes_sent + r.bytes_received for r in results) / len(items),
        prompt_tokens_per_request=per_req(sum(r.usage.prompt_tokens for r in results)),
        computed_tokens_per_request=per_req(sum(r.usage.computed_tokens for r in results)),
        cached_tokens_per_request=per_req(sum(r.usage.cached_tokens for r in results)),
        token_time_p50_ms=_pct(times, 0.5), token_time_p95_ms=_pct(times, 0.95), per_item_correct=correct,
        texts=[r.text for r in results], correct=sum(correct),
        accuracy_ci95=wilson_interval(sum(correct), len(items)), answers=answers,
    )  # fmt: skip


class RoutingEval:
    """Runs every configuration of one pair against a running cloud (router + vLLM)."""

    def __init__(self, pair: PairSpec, cfg: RoutingEvalConfig, runner: TransformersRunner, router_url: str,
                 vllm_url: str, served_model: str, items: list[Item], log: Callable[[str], None],
                 calibration: list[Item] | None = None) -> None:  # fmt: skip
        """``calibration``: held-out items whose small-only scores set the thresholds (None: ``items``)."""
        self.pair, self.cfg, self.runner, self.items, self.log = pair, cfg, runner, items, log
        self.calibration = calibration
        self.router_url, self.vllm_url, self.served_model = router_url, vllm_url, served_model
        self.prompts = [runner.apply_chat_template(it.prompt) for it in items]
        # text mode: the cloud reads the task prompt as plain text (a different model family, its own framing)
        self.cloud_texts = [it.prompt for it in items]
        self.summaries: list[RunSummary] = []
        self.skipped: dict[str, str] = {}
        self.on_summary: Callable[[list[RunSummary]], None] | None = None  # e.g. write partial results

    def _client(self, delay_ms: float) -> EdgeClient:
        transport = DelayTransport(delay_ms) if delay_ms else None
        return EdgeClient(self.router_url, retry=RetryPolicy(max_retries=1), timeout=httpx.Timeout(60.0, connect=5.0),
                          http_client=httpx.Client(transport=transport))  # fmt: skip

    def _run(self, label: str, gate: Gate, *, strategy: str = "escalate", link: str = "stateful",
             target: float | None = None, delay_ms: float = 0.0, n: int | None = None,
             mode: SessionMode | None = None, escalate_k: int = 1) -> RunSummary:  # fmt: skip
        items, prompts = self.items[:n], self.prompts[:n]
        mode = mode or self.pair.mode
        cfg = SessionConfig(strategy=strategy, mode=mode, max_new_tokens=self.cfg.max_new_tokens,  # type: ignore[arg-type]
                            draft_len=self.cfg.draft_len, cloud_deadline_s=60.0, escalate_k=escalate_k,
                            delete_cloud_session=True)  # traffic is counted before the delete  # fmt: skip
        client = self._client(delay_ms) if link == "stateful" else None
        factory = None
        if link == "stateless":
            transport = DelayTransport(delay_ms) if delay_ms else None
            factory = StatelessLink.factory(self.vllm_url, self.served_model, transport)
        session = EdgeSession(self.runner, gate, client, cfg, link_factory=factory)
        results = []
        t0 = time.perf_counter()
        for i, prompt in enumerate(prompts):
            cloud_text = self._cloud_prompt(i, prompt, mode)
            results.append(session.generate(prompt, cloud_prompt_text=cloud_text))
        s = summarise(
            label,
            gate.name,
            strategy,
            link,
            target,
            getattr(gate, "threshold", None),
            delay_ms,
            items,
            results,
        )
        lo, hi = s.accuracy_ci95
        self.log(f"  {label:<34} acc={s.correct}/{s.items}={s.accuracy:.2f} [{lo:.2f},{hi:.2f}] esc={s.escalation_rate:.3f} req={s.requests} "
                 f"computed/req={s.computed_tokens_per_request:.1f} p50={s.token_time_p50_ms:.0f}ms "
                 f"({time.perf_counter() - t0:.0f}s)")  # fmt: skip
        self.summaries.append(s)
        if self.on_summary is not None:
            self.on_summary(self.summaries)
        return s

    def _cloud_prompt(self, i: int, prompt: list[int], mode: SessionMode) -> str | None:
        if mode == "token":
            return None
        if self.pair.mode == "token":  # stateless baseline on a same-tokenizer pair: the exact chat text
            return str(self.runner.tokenizer.decode(prompt, skip_special_tokens=False))
        return self.cloud_texts[i]

    def _record_held_out(self, gates: dict[str, Gate]) -> ScoreRecorder:
        """The gates' scores on the held-out calibration items (edge alone, as in small-only)."""
        assert self.calibration
        recorder = ScoreRecorder(gates)
        cfg = SessionConfig(mode=self.pair.mode, max_new_tokens=self.cfg.max_new_tokens)
        session = EdgeSession(self.runner, recorder, None, cfg)
        t0 = time.perf_counter()
        for it in self.calibration:
            session.generate(self.runner.apply_chat_template(it.prompt))
        self.log(f"  calibration: small-only scores on {len(self.calibration)} held-out items "
                 f"({time.perf_counter() - t0:.0f}s)")  # fmt: skip
        return recorder

    def run(self) -> list[RunSummary]:
        cfg = self.cfg
        gates: dict[str, Gate] = {}
        for name in cfg.gates:
            if name == "mlp":
                if cfg.router_path is None:
                    self.skipped["mlp"] = "no --router given (train one with `xedge train-router`)"
                    continue
                gates[name] = create_gate("mlp", path=cfg.router_path)
            else:
                gates[name] = create_gate(name)
        recorder = ScoreRecorder(gates)
        self._run("small-only", recorder, link="none")
        if self.calibration:
            recorder = self._record_held_out(gates)
        # cloud-only: the cloud writes the whole answer (greedy, so the same tokens as escalating every
        # position, in one request per MAX_CLOUD_K tokens instead of one per token)
        self._run("cloud-only", RandomGate.at_rate(1.0), escalate_k=min(MAX_CLOUD_K, cfg.max_new_tokens))
        for rate in cfg.rates:
            for name, gate in gates.items():
                cal = calibrate(gate, recorder.answers[name], rate)
                self._run(f"{name}@{rate:g}", gate.with_threshold(cal.threshold), target=rate)
            self._run(f"random@{rate:g}", RandomGate.at_rate(rate, seed=cfg.seed), target=rate)
        first = next(iter(gates))
        first_gate = gates[first].with_threshold(
            calibrate(gates[first], recorder.answers[first], cfg.rates[-1]).threshold
        )
        if cfg.stateless:
            self._run(f"stateless {first}@{cfg.rates[-1]:g}", first_gate, link="stateless", target=cfg.rates[-1],
                      mode="text")  # fmt: skip
        if cfg.speculative:
            self._run(f"speculative draft={cfg.draft_len}", RandomGate.at_rate(1.0), strategy="speculative")
        n = min(cfg.delay_items, len(self.items))
        low = cfg.rates[0]
        for delay in cfg.delays_ms if n else ():
            gate = gates[first].with_threshold(
                calibrate(gates[first], recorder.answers[first], low).threshold
            )
            self._run(f"delay {delay:g}ms {first}@{low:g}", gate, target=low, delay_ms=delay, n=n)
            if cfg.speculative:
                self._run(f"delay {delay:g}ms speculative", RandomGate.at_rate(1.0), strategy="speculative",
                          delay_ms=delay, n=n)  # fmt: skip
        return self.summaries


def load_items(data_root: Path, tasks: tuple[str, ...], n_per_task: int, offset: int = 0) -> list[Item]:
    """Items ``offset .. offset + n_per_task`` of each task's dev set (a fixed, reproducible subset)."""
    items: list[Item] = []
    for name in tasks:
        task = get_task(name)
        path = data_root / task.dev_file
        if not path.is_file():
            raise FileNotFoundError(f"evaluation data {path} not found")
        rows = task.load(path)
        if offset + n_per_task > len(rows):
            raise ValueError(f"{name}: asked for items {offset}..{offset + n_per_task - 1}, the dev set has {len(rows)}")
        items.extend(rows[offset : offset + n_per_task])
    return items


def pair_json(pair: PairSpec) -> dict[str, Any]:
    return {
        **asdict(pair),
        "edge_model_dir": str(pair.edge_model_dir),
        "cloud_model_dir": str(pair.cloud_model_dir),
    }


def task_block(cfg: RoutingEvalConfig, items: int, skipped: dict[str, str]) -> dict[str, Any]:
    """One task's part of the results JSON (``runs`` and ``ratios`` are added as they come)."""
    return {
        "config": {**asdict(cfg), "router_path": str(cfg.router_path) if cfg.router_path else None},
        "items": items,
        "skipped": skipped,
    }


def mean(xs: list[float]) -> float:
    return statistics.fmean(xs) if xs else float("nan")
