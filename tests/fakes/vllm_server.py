"""A small fake of vLLM's OpenAI server for proxy tests: records every request body it gets, answers
``/v1/completions`` and ``/v1/chat/completions`` (plain and SSE) with usage numbers derived from the body,
and keeps a toy prefix cache keyed by (cache_salt, prompt) so a repeated prompt reports cached tokens."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

MODEL = "fake-model"


def _prompt_tokens(body: dict[str, Any]) -> str:
    if "messages" in body:
        return " ".join(str(m.get("content", "")) for m in body["messages"])
    return str(body.get("prompt", ""))


def make_fake_vllm() -> FastAPI:
    app = FastAPI()
    app.state.bodies = []
    seen: set[tuple[str | None, str]] = set()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "fake", "root": "/fake"}]}

    async def answer(request: Request, chat: bool) -> Any:
        body = await request.json()
        app.state.bodies.append(body)
        if body.get("model") != MODEL:
            error = {"message": f"The model `{body.get('model')}` does not exist.", "type": "NotFoundError", "code": 404}
            return JSONResponse({"error": error}, status_code=404)
        text = _prompt_tokens(body)
        key = (body.get("cache_salt"), text)
        prompt = len(text.split())
        usage = {"prompt_tokens": prompt, "completion_tokens": 3, "total_tokens": prompt + 3,
                 "prompt_tokens_details": {"cached_tokens": prompt if key in seen else 0}}  # fmt: skip
        seen.add(key)
        words = ["one", "two", "three"]
        if not body.get("stream"):
            if chat:
                choice = {"index": 0, "message": {"role": "assistant", "content": " ".join(words)}, "finish_reason": "length"}
            else:
                choice = {"index": 0, "text": " ".join(words), "finish_reason": "length"}
            obj = "chat.completion" if chat else "text_completion"
            return {"id": "x-1", "object": obj, "created": 0, "model": MODEL, "choices": [choice], "usage": usage}

        def events() -> Iterator[bytes]:
            for w in words:
                if chat:
                    choice = {"index": 0, "delta": {"content": w + " "}, "finish_reason": None}
                    obj = "chat.completion.chunk"
                else:
                    choice = {"index": 0, "text": w + " ", "finish_reason": None}
                    obj = "text_completion"
                chunk = {"id": "x-1", "object": obj, "created": 0, "model": MODEL, "choices": [choice]}
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            if (body.get("stream_options") or {}).get("include_usage"):
                obj = "chat.completion.chunk" if chat else "text_completion"
                last = {"id": "x-1", "object": obj, "created": 0, "model": MODEL, "choices": [], "usage": usage}
                yield f"data: {json.dumps(last)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        return await answer(request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        return await answer(request, chat=True)

    return app
