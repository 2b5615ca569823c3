"""`xedge serve`: vLLM with our plugins + the router, on loopback by default, until Ctrl-C / SIGTERM."""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError

from server.launch.process import LaunchError
from server.models.store import ModelNotFoundError

if TYPE_CHECKING:
    from server.settings import StackSettings

OPEN_BANNER = """
[xedge] ==================================================================================
[xedge]  OPEN: no API keys (XEDGE_ROUTER_API_KEYS). Every caller of {url} is trusted and picks
[xedge]  its tenant with the X-Xedge-Tenant header: it can read and delete any tenant's sessions.
[xedge]  Fine on loopback for one user; set keys ('tenant:key,...') before anyone else can connect.
[xedge] =================================================================================="""


def open_listen_refusal(settings: StackSettings, router_keys: str) -> str | None:
    """Why `xedge serve` must not start (None: it may): listening beyond loopback without API keys,
    unless ``allow_open`` says so on purpose."""
    if router_keys or settings.allow_open:
        return None
    try:
        loopback = ipaddress.ip_address(settings.host).is_loopback
    except ValueError:
        loopback = settings.host == "localhost"
    if loopback:
        return None
    return (
        f"refusing to listen on {settings.host} without API keys: anyone who can reach it could use and delete "
        "every tenant's sessions. Set XEDGE_ROUTER_API_KEYS='tenant:key,...', or pass --allow-open "
        "(XEDGE_ALLOW_OPEN=1) to run open on purpose"
    )


def one_line(exc: ValidationError, flags: Collection[str] | None = None) -> str:
    """A settings validation error as one line naming the flag: `--prefix-cache-policy: unknown ...`, or the
    environment variable (`XEDGE_KV_CACHE_GIB: ...`) where the value came from there, not from ``flags``
    (the fields given as flags; None: name flags only). Never the value itself: it may be a secret."""
    env = {k.upper() for k in os.environ}
    parts = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        var = f"XEDGE_{field.upper()}"
        if flags is not None and field not in flags and var in env:
            name = var
        else:
            name = "--" + "-".join(str(p) for p in err["loc"]).replace("_", "-")
        parts.append(f"{name}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def env_error_line(exc: ValueError) -> str:
    """A settings source error (`XEDGE_VLLM_ARGS=not json`) as one line naming the variable."""
    field = re.search(r'error parsing value for field "(\w+)" from source "EnvSettingsSource"', str(exc))
    return f"XEDGE_{field[1].upper()}: not valid JSON" if field else str(exc)


def serve(
    model: Annotated[str | None, typer.Option(help="Local HF model directory (default: packaged SmolLM2-135M-Instruct).")] = None,
    host: Annotated[str | None, typer.Option(help="Address the router listens on [default: 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Router port (edge + OpenAI-compatible API) [default: 8000].")] = None,
    vllm_port: Annotated[int | None, typer.Option(help="vLLM's own port on 127.0.0.1 [default: 0 = a free one].")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda [default: auto].")] = None,
    prefix_cache_policy: Annotated[str | None, typer.Option(help="KV-cache eviction policy (see `xedge bench prefix-cache`) [default: lru].")] = None,
    kv_cache_gib: Annotated[float | None, typer.Option(help="KV cache size on CPU, GiB [default: 1.0].")] = None,
    kv_host_tier_blocks: Annotated[int | None, typer.Option(help="A second KV tier of this many blocks in host memory: computed blocks are copied out, evicted prefixes load back instead of being recomputed [default: 0 = off].")] = None,
    max_model_len: Annotated[int | None, typer.Option(help="vLLM max model length.")] = None,
    block_size: Annotated[int | None, typer.Option(help="vLLM KV block size, a multiple of 32 on CPU (default: vLLM's on CPU, the XAttention block on CUDA).")] = None,
    xattn_stride: Annotated[int | None, typer.Option(help="XAttention antidiagonal stride (8 or 16).")] = None,
    xattn_threshold: Annotated[float | None, typer.Option(help="XAttention threshold tau in (0, 1].")] = None,
    xattn_min_len: Annotated[int | None, typer.Option(help="Prompts at least this long take the sparse prefill.")] = None,
    xattn_threshold_table: Annotated[Path | None, typer.Option(help="Per-(layer, head) tau table from `xedge calibrate-xattn`.")] = None,
    xattn_dense_above: Annotated[float | None, typer.Option(help="CUDA: a prefill row whose estimated density is above this runs vLLM's dense kernel (default: the break-even measured for the card).")] = None,
    xattn_min_sparse_ms: Annotated[float | None, typer.Option(help="CUDA: a prefill row runs XAttention in a layer only if dense attention there would take at least this many ms on the card (default: the card's measured value; 0: no minimum).")] = None,
    xattn_dense_margin: Annotated[float | None, typer.Option(help="CUDA: a layer whose latest estimated density at a context length is at least this multiple of the break-even runs dense there with no estimate, re-estimated every 16 calls; >= 1 [default: 1.0].")] = None,
    xattn_sparse_kernel: Annotated[str | None, typer.Option(help="CUDA: what computes the selected blocks: fa3 (vLLM's FlashAttention 3 over per-block page tables), triton, or auto (fa3 where measured faster on the card and the KV block size allows) [default: auto].")] = None,
    xattn_estimate_fp8: Annotated[bool | None, typer.Option(
        "--xattn-estimate-fp8/--no-xattn-estimate-fp8",
        help="CUDA sm_90+: the estimation GEMM on fp8 copies of q and k scaled per head [default: off].")] = None,
    xattn_time_paths: Annotated[bool | None, typer.Option(
        "--xattn-time-paths/--no-xattn-time-paths",
        help="CUDA: each layer times dense and XAttention per context length and runs the cheaper [default: on with the Triton sparse kernel, off with fa3].")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Where logs and plugin status go (default: a temp dir).")] = None,
    sampling_verify: Annotated[bool | None, typer.Option(
        "--sampling-verify/--no-sampling-verify",
        help="Load the verify logits processor (sampling sessions' verify needs it). Default: on for CPU, "
        "off on CUDA, where it moves vLLM off its V2 model runner.")] = None,
    allow_open: Annotated[bool | None, typer.Option(
        "--allow-open/--no-allow-open",
        help="Listen beyond loopback without API keys (every caller trusted). Refused unless given.")] = None,
) -> None:
    """Start vLLM (CPU build here, CUDA on a GPU machine) with xedge's plugins, and the router in front."""
    from attention_backend.config import ADDITIONAL_CONFIG_KEY, additional_config_from_flags
    from server.launch.stack import Stack
    from server.launch.supervise import interrupt_on_sigterm, run_supervised
    from server.launch.vllm_cmd import with_stack_secrets
    from server.settings import StackSettings

    given: dict[str, object] = {}
    try:
        xattn = additional_config_from_flags(
            stride=xattn_stride, threshold=xattn_threshold, min_len=xattn_min_len, threshold_table=xattn_threshold_table,
            dense_above=xattn_dense_above,
            min_sparse_ms=xattn_min_sparse_ms, sparse_kernel=xattn_sparse_kernel, estimate_fp8=xattn_estimate_fp8,
            time_paths=xattn_time_paths, dense_margin=xattn_dense_margin,
        )[ADDITIONAL_CONFIG_KEY]
        given = dict(
            model=model, host=host, port=port, vllm_port=vllm_port, device=device,
            prefix_cache_policy=prefix_cache_policy, kv_cache_gib=kv_cache_gib, max_model_len=max_model_len,
            kv_host_tier_blocks=kv_host_tier_blocks,
            block_size=block_size, run_dir=run_dir, sampling_verify=sampling_verify, allow_open=allow_open,
        )  # fmt: skip
        # Flags left out fall back to StackSettings (XEDGE_* env, then its defaults): each default is written once.
        settings = StackSettings(xattn=xattn, **{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        typer.echo(f"xedge serve: {one_line(exc, [k for k, v in given.items() if v is not None])}", err=True)
        raise typer.Exit(2) from None
    except ValueError as exc:
        typer.echo(f"xedge serve: {env_error_line(exc)}", err=True)
        raise typer.Exit(2) from None

    router_keys = os.environ.get("XEDGE_ROUTER_API_KEYS", "").strip()
    refusal = open_listen_refusal(settings, router_keys)
    if refusal:
        typer.echo(f"xedge serve: {refusal}", err=True)
        raise typer.Exit(2)
    # Secure defaults: vLLM's local port keyed and the tenants' cache-salt secret random, per stack unless
    # configured; the router process inherits them through the environment.
    settings, router_env = with_stack_secrets(settings, os.environ)
    os.environ.update(router_env)
    stack = Stack(settings)
    interrupt_on_sigterm()
    try:
        stack.start()
    except (LaunchError, ModelNotFoundError) as exc:
        typer.echo(f"xedge serve: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    try:
        typer.echo(f"[xedge] vLLM (internal): {stack.vllm_url}   logs: {stack.run_dir}")
        typer.echo(f"[xedge] router: {stack.router_url}  (edge API /v1/sessions, docs {stack.router_url}/docs)")
        if not router_keys:  # next to the address it concerns, on the same stream as the ready line
            typer.echo(OPEN_BANNER.format(url=stack.router_url))
        typer.echo(f"[xedge] ready: serving {stack.served_model_name} at {stack.router_url}")
        sys.stdout.flush()
        # A dead or hung vLLM (or router) is restarted with backoff; the router answers 503 meanwhile.
        gave_up = not run_supervised(stack.children(), lambda m: typer.echo(m, err=True), "xedge serve")
    finally:
        stack.stop()
        typer.echo("[xedge] stopped")
    if gave_up:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
