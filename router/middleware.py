"""ASGI middleware: request body size limit (413 before the app sees the body), body deadline (408 for
a body that stalls), and the protocol header.

A request whose client disconnects before its body is complete never reaches the app (it used to run on
the partial body)."""

from __future__ import annotations

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from client_edge.protocol import PROTOCOL_HEADER, PROTOCOL_VERSION, ErrorInfo
from router.errors import error_response


class BodyLimitMiddleware:
    """Buffers at most ``max_bytes`` of each request body; a larger one is answered 413 ``body_too_large``,
    one not complete within ``timeout_s`` 408 ``body_timeout``."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, receive, send, int(declared))
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        with anyio.move_on_after(self.timeout_s) as deadline:
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away before its body was complete: nothing to run
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_bytes:
                    await self._reject(scope, receive, send, size)
                    return
                chunks.append(chunk)
                more = message.get("more_body", False)
        if deadline.cancelled_caught:
            info = ErrorInfo(code="invalid_request", message=f"the request body did not arrive within {self.timeout_s:g} s")
            await error_response(408, info, path=scope["path"])(scope, receive, send)
            return
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                headers.append((PROTOCOL_HEADER.lower().encode(), str(PROTOCOL_VERSION).encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, replay, with_header)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, size: int) -> None:
        info = ErrorInfo(
            code="body_too_large", message=f"request body of at least {size} bytes exceeds the limit of {self.max_bytes}"
        )
        await error_response(413, info, path=scope["path"])(scope, receive, send)
