"""``xedge calibrate-xattn``: per-(layer, head) XAttention thresholds for a model, as a JSON table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def calibrate_xattn(
    out: Annotated[Path, typer.Option(help="Write the threshold table (JSON) here.")],
    model: Annotated[str | None, typer.Option(help="Local HF model directory (default: packaged SmolLM2-135M-Instruct).")] = None,
    target: Annotated[float, typer.Option(help="Share of each head's TRUE attention mass to keep, in (0, 1].")] = 0.9,
    stride: Annotated[int, typer.Option(help="Antidiagonal stride S (a divisor of the block size).")] = 8,
    block_size: Annotated[int, typer.Option(help="Block size B.")] = 128,
    prompts: Annotated[int, typer.Option(help="Sample prompts (real text from the shared data folder).")] = 2,
    tokens: Annotated[int, typer.Option(help="Tokens per sample prompt.")] = 4096,
    text_file: Annotated[list[Path] | None, typer.Option(help="Use these text files as the prompts instead.")] = None,
) -> None:
    """Find, per layer and query head, the smallest tau whose blocks keep TARGET of the true attention."""
    from attention_backend.calibrate import calibrate_model
    from attention_backend.sample_text import SampleTextUnavailable, long_texts
    from server.models.store import ModelNotFoundError, resolve_model_dir

    try:
        if not 0.0 < target <= 1.0:
            raise ValueError(f"--target: expected a share in (0, 1], got {target}")
        if prompts < 1 or tokens < block_size:
            raise ValueError(f"--prompts >= 1 and --tokens >= --block-size expected, got {prompts}, {tokens}")
        model_dir = resolve_model_dir(model)  # before reading any text: a bad --model fails first
        if text_file:
            missing = [str(p) for p in text_file if not p.is_file()]
            if missing:
                raise ValueError(f"--text-file: expected existing files, got missing {missing}")
            texts = [p.read_text() for p in text_file]
        else:
            texts = long_texts(prompts, tokens * 6)  # ~4 characters per token: surely enough
        result = calibrate_model(
            model_dir, texts, max_tokens=tokens, block_size=block_size, stride=stride, target=target,
            log=lambda line: typer.echo(line, err=True),
        )  # fmt: skip
    except (ValueError, ModelNotFoundError, SampleTextUnavailable) as exc:
        typer.echo(f"xedge calibrate-xattn: {exc}", err=True)
        raise typer.Exit(2) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    table = result["threshold"]
    typer.echo(
        f"wrote {out}: {len(table)} layers x {len(table[0])} heads, mean tau {result['mean_tau']:.3f} "
        f"(target {target} of true attention, S={stride}, B={block_size}, prompts of {result['prompt_tokens']} tokens)"
    )


def register(app: typer.Typer) -> None:
    app.command("calibrate-xattn")(calibrate_xattn)
