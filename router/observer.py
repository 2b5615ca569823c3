"""Observation hook for metrics: every edge operation reports its outcome to the service's observers.

A metrics surface (Prometheus ``/metrics``) implements :class:`ServiceObserver` and appends itself to
``app.state.service.observers`` at startup; the router itself depends on no metrics library.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from client_edge.protocol import Usage
from router.errors import RouterError

log = logging.getLogger("router")

Operation = Literal["create", "escalate", "verify", "sync", "truncate", "delete"]
R = TypeVar("R")


class ServiceObserver:
    """Contract: ``on_operation`` is called once per finished edge operation with its wall time, the
    engine usage it reported (None when no engine call) and the error code it ended with (None = ok).
    It runs on the event loop: keep it cheap and do not raise (an exception is logged, not propagated)."""

    def on_operation(
        self, op: Operation, tenant: str, seconds: float, usage: Usage | None, error: str | None
    ) -> None:
        """Default: ignore."""


def observed(op: Operation) -> Callable[[Callable[..., Awaitable[R]]], Callable[..., Awaitable[R]]]:
    """Decorate an ``EdgeService`` coroutine method whose last positional argument is the tenant."""

    def wrap(fn: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
        @functools.wraps(fn)
        async def inner(self: Any, *args: Any) -> R:
            t0 = time.perf_counter()
            usage: Usage | None = None
            error: str | None = None
            try:
                reply = await fn(self, *args)
                usage = getattr(reply, "usage", None)
                return reply
            except RouterError as exc:
                error = exc.code
                raise
            except Exception:
                error = "internal"
                raise
            finally:
                for observer in self.observers:
                    try:
                        observer.on_operation(op, args[-1], time.perf_counter() - t0, usage, error)
                    except Exception:
                        log.exception("observer %r failed on %s", observer, op)

        return inner

    return wrap
