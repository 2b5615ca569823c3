"""``xedge bench prefix-cache``: replay a request trace against eviction policies and capacities."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

DEFAULT_CAPACITIES = "1M,2M,3M,5M,10M,50M"


def prefix_cache(
    trace: Annotated[Path, typer.Option(help="JSONL trace (Mooncake or Alibaba Bailian format).")],
    capacity_tokens: Annotated[
        str, typer.Option(help="Comma list of cache sizes in tokens (k/M suffix ok).")
    ] = DEFAULT_CAPACITIES,
    policy: Annotated[
        str,
        typer.Option(
            help="Comma list of policies, or 'all' (lru, workload, workload-paper, s3fifo, density, guarded, session, belady)."
        ),
    ] = "all",
    trace_format: Annotated[
        str | None, typer.Option("--format", help="mooncake or bailian (default: detect).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the results JSON here.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write the hit-ratio-vs-capacity PNG here.")] = None,
    limit: Annotated[int | None, typer.Option(help="Replay only the first N requests.")] = None,
    decode_ms_per_token: Annotated[
        float, typer.Option(help="Service model: requests hold blocks this long per output token.")
    ] = 0.0,
    jobs: Annotated[int, typer.Option(help="Worker processes.")] = 2,
) -> None:
    """Replay TRACE for every policy and capacity; print a table and optionally write JSON and a plot."""
    from server.research.cache_sim.grid import GridInputError, parse_capacities, parse_policies, run_grid
    from server.research.cache_sim.replay import ServiceModel
    from server.research.cache_sim.trace import TraceFormatError, read_trace

    try:
        if trace_format not in (None, "mooncake", "bailian"):
            raise GridInputError(f"--format must be mooncake or bailian, got {trace_format!r}")
        if limit is not None and limit <= 0:
            raise GridInputError(f"--limit must be a positive integer, got {limit}")
        if jobs <= 0:
            raise GridInputError(f"--jobs must be a positive integer, got {jobs}")
        capacities = parse_capacities(capacity_tokens)
        policies = parse_policies(policy)
        service = ServiceModel(decode_s_per_token=decode_ms_per_token / 1000.0)
        start = time.perf_counter()
        data = read_trace(trace, trace_format, limit)  # type: ignore[arg-type]
        grid = run_grid(data, trace.name, capacities, policies, service=service, jobs=jobs)
    except (GridInputError, TraceFormatError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    elapsed = time.perf_counter() - start
    typer.echo(grid.table())
    typer.echo(
        f"{len(data)} requests, {len(policies)} policies x {len(capacities)} capacities in {elapsed:.1f} s"
    )
    if out is not None:
        payload = {
            **grid.to_json(),
            "service_model": {"decode_ms_per_token": decode_ms_per_token},
            "seconds": round(elapsed, 1),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(payload, indent=2) + "\n")
        typer.echo(f"wrote {out}")
    if plot is not None:
        from server.research.cache_sim.plot import plot_grid

        typer.echo(f"wrote {plot_grid(grid, plot)}")


def register(app: typer.Typer) -> None:
    """Add ``prefix-cache`` to the app's ``bench`` sub-app (found on ``app`` itself, so this also works
    when server/cli.py runs as ``__main__``)."""
    for group in app.registered_groups:
        if group.name == "bench" and group.typer_instance is not None:
            group.typer_instance.command("prefix-cache")(prefix_cache)
            return
    raise RuntimeError("server.cli has no 'bench' sub-app to add 'prefix-cache' to")
