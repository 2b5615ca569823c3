"""`xedge demo`: the main job on the embedded default.

Starts the stack (vLLM on CPU with the packaged SmolLM2-135M-Instruct + the router), runs the edge SDK with
the same model locally on the runtime ``--runner`` picks (llama.cpp on the packaged GGUF, or a degraded
float32 copy on transformers; same tokenizer either way, so token-level escalation), and answers a few
real GSM8K / CommonsenseQA questions, escalating low-confidence tokens to the cloud through the router.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from server.demo.edge import DEFAULT_RUNNER, RUNNERS


def demo(
    n_prompts: Annotated[int, typer.Option(min=1, help="How many eval questions (half GSM8K, half CommonsenseQA).")] = 4,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens per answer.")] = 48,
    gate: Annotated[str, typer.Option(help="Escalation gate: entropy, top1, rolling_entropy, mlp.")] = "entropy",
    threshold: Annotated[float, typer.Option(help="Gate threshold (entropy in nats / top-1 probability).")] = 2.0,
    run_dir: Annotated[Path | None, typer.Option(help="Where logs go (default: a temp dir).")] = None,
    runner: Annotated[
        str,
        typer.Option(help=f"Edge runtime: {' or '.join(RUNNERS)} (default: the faster on this CPU, measured)."),
    ] = DEFAULT_RUNNER,
) -> None:
    """Serve the packaged model on CPU and answer real questions from an edge client that escalates."""
    from pydantic import ValidationError
    from rich.console import Console
    from rich.table import Table

    from client_edge import EdgeClient
    from client_edge.gates import create_gate
    from client_edge.result import TokenSource
    from client_edge.session import EdgeSession, SessionConfig
    from server.commands.serve import env_error_line, one_line
    from server.demo.edge import make_edge_runner
    from server.demo.prompts import load_demo_prompts
    from server.launch.process import LaunchError
    from server.launch.stack import Stack
    from server.launch.supervise import interrupt_on_sigterm
    from server.models.store import ModelNotFoundError
    from server.settings import StackSettings

    if runner not in RUNNERS:
        raise typer.BadParameter(f"{runner!r}: choose one of {', '.join(RUNNERS)}", param_hint="--runner")
    try:  # before the stack starts (a minute), not after
        escalation_gate = create_gate(gate, threshold=threshold)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--gate / --threshold") from None
    try:
        # 32-token KV blocks (vLLM's CPU default is 128): an escalation recomputes at most one partial block
        # beyond its new tokens, so smaller blocks keep the per-escalation cloud work close to the delta.
        given = {"run_dir": run_dir} if run_dir else {}  # left out: XEDGE_RUN_DIR, then a temp dir
        settings = StackSettings(port=0, vllm_port=0, device="cpu", block_size=32, **given)
    except ValidationError as exc:  # an XEDGE_* variable (or --run-dir) the settings refuse
        typer.echo(f"xedge demo: {one_line(exc, list(given))}", err=True)
        raise typer.Exit(2) from None
    except ValueError as exc:  # an XEDGE_* variable that is not even JSON
        typer.echo(f"xedge demo: {env_error_line(exc)}", err=True)
        raise typer.Exit(2) from None
    console = Console(stderr=False)
    prompts, note = load_demo_prompts(n_gsm8k=(n_prompts + 1) // 2, n_csqa=n_prompts // 2)
    if note:
        console.print(f"[yellow]note:[/] {note}")
    interrupt_on_sigterm()  # SIGTERM stops the stack like Ctrl-C: its children run in their own sessions
    try:
        with console.status("starting vLLM (CPU) + router: about a minute ..."):
            stack = Stack(settings, log=lambda line: console.log(line)).start()
    except (LaunchError, ModelNotFoundError) as exc:
        typer.echo(f"xedge demo: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    try:
        console.log(f"stack ready: router {stack.router_url}, vLLM {stack.vllm_url}, logs {stack.run_dir}")
        with console.status(f"loading the edge model ({runner}) ..."):
            # the cloud (vLLM) runs on this machine too: half the cores for the edge, so neither spins waiting
            edge, edge_desc = make_edge_runner(runner, stack.model_dir, n_threads=max(1, (os.cpu_count() or 2) // 2))
        table = Table(title=f"xedge demo: edge {edge_desc} escalating to cloud SmolLM2-135M on vLLM")
        for col in ("prompt", "answer", "generated", "escalated", "cloud computed / cached", "wall s"):
            table.add_column(col, overflow="fold")
        with EdgeClient(stack.router_url) as client:
            session = EdgeSession(
                edge,
                escalation_gate,
                client,
                SessionConfig(max_new_tokens=max_new_tokens, cloud_deadline_s=30.0),
            )
            for i, prompt in enumerate(prompts, 1):
                t0 = time.perf_counter()
                with console.status(f"[{i}/{len(prompts)}] {prompt.source}: generating on the edge ..."):
                    result = session.generate(edge.apply_chat_template(prompt.text))
                wall = time.perf_counter() - t0
                u = result.usage
                console.log(
                    f"[{i}/{len(prompts)}] {prompt.source}: {len(result.token_ids)} tokens, "
                    f"{result.escalated_positions} escalated, cloud computed {u.computed_tokens} / cached "
                    f"{u.cached_tokens} prompt tokens, {wall:.1f} s"
                )
                table.add_row(
                    f"{prompt.source}: {prompt.text[:80]}...",
                    result.text.strip(),
                    str(len(result.token_ids)),
                    f"{result.escalated_positions} ({result.count(TokenSource.CLOUD)} cloud tokens)",
                    f"{u.computed_tokens} / {u.cached_tokens}",
                    f"{wall:.1f}",
                )
        console.print(table)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    finally:
        with console.status("stopping the stack ..."):
            stack.stop()


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
