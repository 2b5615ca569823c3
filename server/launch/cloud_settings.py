"""`StackSettings` from a service's environment mapping (``XEDGE_<FIELD>``), for the container entry point
and for `xedge up`: both build vLLM's command line from the same settings as `xedge serve`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from server.settings import StackSettings

_JSON_FIELDS = {"xattn", "vllm_args"}


def stack_settings_from_env(env: Mapping[str, str], **overrides: Any) -> StackSettings:
    """Fields named by ``XEDGE_<FIELD>`` keys of ``env`` (JSON for ``xattn`` / ``vllm_args``), then ``overrides``."""
    fields: dict[str, Any] = {}
    for name in StackSettings.model_fields:
        key = f"XEDGE_{name.upper()}"
        if key in env and env[key] != "":
            value: Any = env[key]
            if name in _JSON_FIELDS:
                try:
                    value = json.loads(value)
                except ValueError as exc:
                    raise ValueError(f"{key} must be JSON ({'object' if name == 'xattn' else 'list'}): {exc}") from None
            fields[name] = value
    fields.update(overrides)
    return StackSettings(**fields)
