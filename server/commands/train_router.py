"""`xedge train-router`: train the CITER-style MLP token router for an edge model on the shared
router_train data and save it (``<out>.npz`` + ``<out>.json``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer


def parse_layers(spec: str | None) -> tuple[int, ...] | None:
    """``"0-11,14-29"`` -> (0, ..., 11, 14, ..., 29); None/"" = all layers."""
    if not spec:
        return None
    out: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise ValueError(f"bad layer spec {spec!r}: expected e.g. '0-11,14-29'") from None
        if b < a:
            raise ValueError(f"bad layer range {part!r} in {spec!r}")
        out.extend(range(a, b + 1))
    return tuple(out)


def train_router(
    out: Annotated[Path, typer.Option(help="Output stem: writes OUT.npz and OUT.json.")],
    model: Annotated[
        str | None, typer.Option(help="Edge model HF dir (default: packaged SmolLM2-135M-Instruct).")
    ] = None,
    keep_layers: Annotated[
        str | None, typer.Option(help="Edge model's kept decoder layers, e.g. '0-11,14-29'.")
    ] = None,
    tasks: Annotated[str, typer.Option(help="Comma-separated: gsm8k, csqa.")] = "gsm8k,csqa",
    max_examples: Annotated[int, typer.Option(min=2, help="Training answers per task.")] = 100,
    max_tokens: Annotated[int, typer.Option(min=1, help="Reference tokens per answer.")] = 192,
    epochs: Annotated[int, typer.Option(min=1)] = 30,
    hidden: Annotated[int, typer.Option(min=1, help="MLP hidden width.")] = 256,
    threads: Annotated[int | None, typer.Option(help="torch threads (default: torch's choice).")] = None,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Label = does the edge's greedy token, teacher-forced along the reference chain of thought, differ
    from the reference; feature = the edge's last hidden state there."""
    from client_edge.gates.mlp_train import TrainConfig, collect_examples, train_mlp
    from client_edge.runner.transformers_runner import TransformersRunner, TransformersRunnerConfig
    from server.data_root import data_root
    from server.models.store import resolve_model_dir
    from server.research.routing_eval.tasks import load_train_pairs

    try:
        layers = parse_layers(keep_layers)
        names = [t.strip() for t in tasks.split(",") if t.strip()]
        pairs_text = [p for name in names for p in load_train_pairs(data_root(), name)[:max_examples]]
        model_dir = resolve_model_dir(model)
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"xedge train-router: {exc}", err=True)
        raise typer.Exit(2) from None
    runner = TransformersRunner(TransformersRunnerConfig(model_dir, keep_layers=layers, num_threads=threads))
    eos = min(runner.eos_token_ids)
    t0 = time.perf_counter()
    pairs = [(runner.apply_chat_template(p), runner.encode(cot) + [eos]) for p, cot in pairs_text]
    ex = collect_examples(runner, pairs, max_tokens=max_tokens)
    t_collect = time.perf_counter() - t0
    router = train_mlp(
        ex, TrainConfig(hidden_sizes=(hidden,), epochs=epochs, seed=seed),
        tokenizer_fingerprint=runner.tokenizer_fingerprint, edge_model=str(model_dir), keep_layers=layers,
    )  # fmt: skip
    npz, meta = router.save(out)
    m = router.metadata
    typer.echo(
        f"answers={m.train_examples} tokens={m.train_tokens} edge-wrong rate={m.positive_rate:.3f} "
        f"val acc={m.val_accuracy:.3f} val AUC={m.val_auc:.3f} (features {t_collect:.0f}s, "
        f"total {time.perf_counter() - t0:.0f}s)\nwrote {npz} and {meta}"
    )


def register(app: typer.Typer) -> None:
    app.command("train-router")(train_router)
