"""`xedge up --config deploy/compose.yml [--profile cpu]`: the compose topology as processes on loopback.

Resolves the compose file with Docker Compose itself (``docker compose config --format json``: ``.env``,
interpolation, profiles; ``server.launch.compose.resolve``), then starts every ``cloud``
service of the chosen profiles as vLLM with our plugins and the ``router`` service in front, with the
same settings the containers get (see ``server.launch.compose.launcher``). Runs until Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer


def up(
    config: Annotated[Path, typer.Option(help="The compose file.")] = Path("deploy/compose.yml"),
    profile: Annotated[list[str] | None, typer.Option(help="Compose profile(s) to enable, e.g. cpu or gpu.")] = None,
    env_file: Annotated[Path | None, typer.Option(help="Variables file (default: .env next to the compose file).")] = None,
    port: Annotated[int | None, typer.Option(help="Router port on 127.0.0.1 (default: the published one; 0: free).")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Logs, plugin status and named volumes (default: a temp dir).")] = None,
    dry_run: Annotated[bool, typer.Option(help="Print what would start, start nothing.")] = False,
) -> None:
    """Start the compose file's services (vLLM replicas + router) as local processes on loopback."""
    import tempfile

    from server.launch.compose.launcher import ComposeStack
    from server.launch.compose.resolve import ComposeError
    from server.launch.compose.topology import load_topology
    from server.launch.process import LaunchError
    from server.launch.supervise import interrupt_on_sigterm, wait_until_stopped
    from server.models.store import ModelNotFoundError

    try:
        topology = load_topology(config, profile or (), env_file=env_file)
        root = run_dir or (Path("<temp dir>") if dry_run else Path(tempfile.mkdtemp(prefix="xedge-up-")))
        stack = ComposeStack(topology, root, router_port=port)
        if dry_run:
            for line in stack.plan():
                typer.echo(line)
            return
    except (ComposeError, ValueError) as exc:
        typer.echo(f"xedge up: {exc}", err=True)
        raise typer.Exit(2) from None

    interrupt_on_sigterm()
    try:
        stack.start()
    except (LaunchError, ModelNotFoundError, ComposeError, ValueError) as exc:
        typer.echo(f"xedge up: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    try:
        for name, url in stack.urls.items():
            typer.echo(f"[xedge up] {name} (vLLM): {url}")
        typer.echo(f"[xedge up] ready: router at {stack.router_url}  (OpenAI API {stack.router_url}/v1, logs {root})")
        sys.stdout.flush()
        wait_until_stopped(
            lambda: [s.vllm for s in stack.clouds.values()] + [stack.router],
            lambda m: typer.echo(m, err=True),
            "xedge up",
        )
    finally:
        stack.stop()
        typer.echo("[xedge up] stopped")


def register(app: typer.Typer) -> None:
    app.command("up")(up)
