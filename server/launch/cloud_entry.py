"""Entry point of a compose ``cloud`` container: ``python3 -m server.launch.cloud_entry``.

Builds vLLM's OpenAI server command exactly as `xedge serve` does (``server.launch.vllm_cmd``, from the
``XEDGE_*`` settings in the environment), listening on ``XEDGE_VLLM_HOST`` (default 0.0.0.0) port
``XEDGE_VLLM_PORT`` (default 8000), clears stale plugin markers from ``XEDGE_STATUS_DIR`` and replaces
itself with vLLM (so signals reach vLLM directly). The healthcheck (``server.launch.healthcheck``) then
requires vLLM's ``/health`` and our plugins' markers.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from server.launch.cloud_settings import stack_settings_from_env
from server.launch.vllm_cmd import ROUTER_ONLY_ENV, resolve_device, vllm_argv, vllm_env
from server.models.store import resolve_model_dir

DEFAULT_PORT = 8000


def cloud_command(environ: Mapping[str, str]) -> tuple[list[str], dict[str, str], Path]:
    """(argv, environment, status dir) of the vLLM server this container runs."""
    status = environ.get("XEDGE_STATUS_DIR")
    if not status:
        raise SystemExit("cloud_entry: XEDGE_STATUS_DIR must be set (where the plugins write their markers)")
    settings = stack_settings_from_env(environ)
    model_dir = resolve_model_dir(settings.model)
    device = resolve_device(settings.device)
    argv = vllm_argv(settings, model_dir, settings.vllm_port or DEFAULT_PORT, device)
    argv[argv.index("--host") + 1] = environ.get("XEDGE_VLLM_HOST", "0.0.0.0")
    inherited = {k: v for k, v in environ.items() if not k.startswith(ROUTER_ONLY_ENV)}  # not the router's secrets
    env = {**inherited, **vllm_env(settings, Path(status), device)}
    return argv, env, Path(status)


def main() -> None:
    argv, env, status = cloud_command(os.environ)
    status.mkdir(parents=True, exist_ok=True)
    for stale in status.glob("*.json"):  # markers of a previous container run must not pass the healthcheck
        stale.unlink()
    print(f"[xedge] cloud: {' '.join(argv)}", file=sys.stderr, flush=True)
    os.chdir(tempfile.gettempdir())  # not a source tree: `python -m` puts the cwd first on sys.path
    os.execvpe(argv[0], argv, env)


if __name__ == "__main__":
    main()
