"""App factory: ``create_app(settings)`` builds the router; its lifespan owns engines, tokenizer and sessions.

Extension point for other surfaces on the same app (OpenAI proxy, API keys, rate limits, metrics):
pass :class:`RouterExtension` objects; each adds its routes and middleware at build time and gets
``startup`` / ``shutdown`` calls inside the lifespan, after the edge service exists (``app.state.service``,
``app.state.engines``, ``app.state.settings``). To resolve tenants from API keys, override
``router.deps.get_tenant`` in ``app.dependency_overrides``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from client_edge.protocol import PROTOCOL_VERSION
from router.api import escalate, info, sessions, sync, verify
from router.engine.base import EngineClient, EngineError, ModelInfo
from router.engine.vllm_http import VLLMHttpEngine
from router.errors import install_error_handlers
from router.middleware import BodyLimitMiddleware
from router.service import EdgeService
from router.settings import RouterSettings
from router.tokenizer import CloudTokenizer, HFTokenizer

log = logging.getLogger("router")


class RouterExtension:
    """Contract of an add-on surface: ``install(app)`` adds routes/middleware when the app is built;
    ``startup(app)`` / ``shutdown(app)`` run inside the lifespan (after / before the edge service)."""

    def install(self, app: FastAPI) -> None:
        """Add routes and middleware (default: nothing)."""

    async def startup(self, app: FastAPI) -> None:
        """Acquire resources (default: nothing)."""

    async def shutdown(self, app: FastAPI) -> None:
        """Release resources (default: nothing)."""


async def _wait_for_models(engines: Sequence[EngineClient], timeout_s: float) -> ModelInfo:
    """Poll every replica's ``model_info`` until all answer (or ``timeout_s`` passes); they must agree."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            infos = [await e.model_info() for e in engines]
            break
        except EngineError as exc:
            if time.monotonic() >= deadline:
                raise RuntimeError(f"vLLM replicas not ready after {timeout_s:.0f} s: {exc}") from exc
            await asyncio.sleep(0.5)
    first = infos[0]
    for i, other in enumerate(infos[1:], start=1):
        if (other.name, other.max_model_len) != (first.name, first.max_model_len):
            raise RuntimeError(f"replica {i} serves {other}, replica 0 serves {first}: all replicas must serve one model")
    return first


def create_app(
    settings: RouterSettings | None = None,
    *,
    engines: Sequence[EngineClient] | None = None,
    tokenizer: CloudTokenizer | None = None,
    extensions: Sequence[RouterExtension] = (),
) -> FastAPI:
    """Build the router app. ``engines`` / ``tokenizer`` replace the vLLM HTTP clients and the tokenizer
    loaded from the model directory (tests pass fakes); by default they come from ``settings``."""
    settings = settings or RouterSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        clients = list(engines) if engines is not None else [
            VLLMHttpEngine(url, timeout_s=settings.engine_timeout_s, model=settings.served_model,
                           api_key=settings.vllm_api_key)
            for url in settings.vllm_urls
        ]
        started: list[RouterExtension] = []
        try:
            model = await _wait_for_models(clients, settings.startup_timeout_s)
            tok = tokenizer
            if tok is None:
                tok = await asyncio.to_thread(HFTokenizer.load, settings.tokenizer_dir or Path(model.root))
            app.state.settings = settings
            app.state.engines = clients
            app.state.service = EdgeService(settings, clients, tok, model)
            log.info("router ready: model %s, %d replica(s), fingerprint %s", model.name, len(clients), tok.fingerprint)
            for ext in extensions:
                await ext.startup(app)
                started.append(ext)
            yield
        finally:
            for ext in reversed(started):
                await ext.shutdown(app)
            for client in clients:
                await client.aclose()
            service = getattr(app.state, "service", None)
            if service is not None:
                await service.store.aclose()

    app = FastAPI(
        title="xedge router",
        version=f"protocol-{PROTOCOL_VERSION}",
        description="Stateful edge sessions in front of vLLM: escalate, speculative verify, sync.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for module in (info, sessions, escalate, verify, sync):
        app.include_router(module.router)
    # Extensions' middleware wraps the body limit, so their metrics also see 413s.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    for ext in extensions:
        ext.install(app)
    return app
