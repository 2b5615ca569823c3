"""Protocol ``Usage`` from the engine's own numbers, summed over the calls one request made."""

from __future__ import annotations

from collections.abc import Sequence

from client_edge.protocol import Usage
from router.engine.base import GenerateResult


def usage_of(results: Sequence[GenerateResult]) -> Usage:
    return Usage(
        prompt_tokens=sum(r.usage.prompt_tokens for r in results),
        cached_tokens=sum(r.usage.cached_tokens for r in results),
        computed_tokens=sum(r.usage.computed_tokens for r in results),
        completion_tokens=sum(r.usage.completion_tokens for r in results),
        engine_calls=len(results),
    )
