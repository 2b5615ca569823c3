"""The `xedge` command line: one Typer app, one module per command under `server.commands`.

Each listed module exposes `register(app: typer.Typer) -> None` (sub-apps: `bench_app`, `eval_app` here); commands import
their heavy dependencies (torch, vLLM) inside the command function so `xedge --help` stays fast.
"""

from __future__ import annotations

import typer

from client_edge.protocol.registry import LazyRegistry

# Modules under server.commands; each exposes register(app). Add yours here (one line).
COMMANDS: tuple[str, ...] = (
    "serve",
    "demo",
    "bench_prefix_cache",
    "train_router",
    "eval_routing",
    "up",
    "calibrate_xattn",
)

COMMAND_REGISTRY = LazyRegistry("command", {name: f"server.commands.{name}:register" for name in COMMANDS})

app = typer.Typer(
    name="xedge",
    help="xedge: long-context LLM serving with cloud-edge token routing, on vLLM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks and simulators.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluations on real data.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(eval_app, name="eval")


def _load_commands() -> None:
    for name in COMMANDS:
        COMMAND_REGISTRY.load(name)(app)


def main() -> None:
    _load_commands()
    app()


if __name__ == "__main__":
    main()
