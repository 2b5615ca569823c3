"""``client.chat.completions.create(...)``: one edge answer per call, as openai-python's types."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from openai.types import CompletionUsage
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta

from client_edge.chat.params import ChatRequest, parse_request
from client_edge.result import GenerationResult, TokenSource
from client_edge.session import AnswerStream, EdgeSession, SessionConfig

if TYPE_CHECKING:
    from client_edge.client import EdgeClient

FINISH = {"eos": "stop", "length": "length"}


def _usage(prompt_tokens: int, r: GenerationResult) -> CompletionUsage:
    """OpenAI's usage block plus the edge/cloud split (extension fields)."""
    n = len(r.token_ids)
    return CompletionUsage(
        prompt_tokens=prompt_tokens,
        completion_tokens=n,
        total_tokens=prompt_tokens + n,
        local_tokens=r.count(TokenSource.LOCAL),
        cloud_tokens=r.count(TokenSource.CLOUD),
        verified_tokens=r.count(TokenSource.VERIFIED),
        unverified_tokens=r.count(TokenSource.UNVERIFIED),
        escalated_tokens=r.escalated_positions,
        cloud_requests=r.usage.requests,
        cloud_prompt_tokens=r.usage.prompt_tokens,
        cloud_computed_prompt_tokens=r.usage.computed_tokens,
        cloud_cached_prompt_tokens=r.usage.cached_tokens,
        cloud_failures=r.cloud_failures,
    )


class _Detokenizer:
    """Turns committed ids into text deltas; a trailing incomplete UTF-8 sequence waits for its end."""

    def __init__(self, decode: Any) -> None:
        self.decode, self.ids, self.text = decode, [], ""

    def push(self, ids: list[int]) -> str:
        self.ids += ids
        text = self.decode(self.ids).rstrip("\ufffd")
        if not text.startswith(self.text):  # a decoder that rewrote earlier text: send only what is new
            n = 0
            while n < min(len(text), len(self.text)) and text[n] == self.text[n]:
                n += 1
            self.text = self.text[:n]
        delta, self.text = text[len(self.text) :], text
        return delta


class ChatCompletionStream:
    """What ``create(stream=True)`` returns: an iterator of ``ChatCompletionChunk`` (like openai's
    ``Stream``), closed early with ``close()`` or by leaving a ``with`` block."""

    def __init__(self, chunks: Iterator[ChatCompletionChunk], answer: AnswerStream) -> None:
        self._chunks, self._answer = chunks, answer

    def __iter__(self) -> Iterator[ChatCompletionChunk]:
        return self._chunks

    def __next__(self) -> ChatCompletionChunk:
        return next(self._chunks)

    def close(self) -> None:
        self._answer.close()

    def __enter__(self) -> ChatCompletionStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Completions:
    def __init__(self, client: EdgeClient) -> None:
        self._client = client

    def create(
        self,
        *,
        model: str,
        messages: Any,
        stream: bool | None = None,
        stream_options: Mapping[str, Any] | None = None,
        max_tokens: int | None = None,
        max_completion_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        n: int | None = None,
        **unsupported: Any,
    ) -> ChatCompletion | ChatCompletionStream:
        """OpenAI's ``chat.completions.create`` on the edge (see ``client_edge.chat.params`` for the
        fields). Raises ``UnsupportedParameterError`` for a field it does not implement."""
        c = self._client
        runner, cfg = c.local_runner(), c.session_config
        req = parse_request(
            served_model=runner.model_name, speculative=cfg.strategy == "speculative", model=model,
            messages=messages, stream=stream, stream_options=stream_options, max_tokens=max_tokens,
            max_completion_tokens=max_completion_tokens, temperature=temperature, top_p=top_p, seed=seed,
            n=n, unsupported=unsupported,
        )  # fmt: skip
        prompt = runner.apply_chat(req.messages)
        cfg = replace(cfg, cloud_sampling=req.sampling, max_new_tokens=req.max_tokens or cfg.max_new_tokens)
        answer = EdgeSession(runner, c.gate_for_chat(), c, cfg).stream(prompt)
        meta = {"id": f"chatcmpl-xedge-{uuid.uuid4().hex}", "created": int(time.time()), "model": model}
        if req.stream:
            return ChatCompletionStream(self._chunks(answer, len(prompt), req, meta), answer)
        return self._whole(answer, len(prompt), meta)

    def _tokens(self, ids: list[int], sources: list[TokenSource]) -> list[dict[str, Any]]:
        decode = self._client.local_runner().decode
        return [{"id": t, "text": decode([t]), "source": s.value} for t, s in zip(ids, sources, strict=True)]

    def _whole(self, answer: AnswerStream, n_prompt: int, meta: dict[str, Any]) -> ChatCompletion:
        for _ in answer:
            pass
        r = answer.result
        assert r is not None
        message = ChatCompletionMessage(role="assistant", content=r.text, xedge_tokens=self._tokens(r.token_ids, r.sources))
        choice = Choice(index=0, finish_reason=FINISH[r.finish_reason], message=message)
        return ChatCompletion(object="chat.completion", choices=[choice], usage=_usage(n_prompt, r), **meta)

    def _chunks(
        self, answer: AnswerStream, n_prompt: int, req: ChatRequest, meta: dict[str, Any]
    ) -> Iterator[ChatCompletionChunk]:
        def chunk(delta: ChoiceDelta, finish: str | None = None) -> ChatCompletionChunk:
            choice = ChunkChoice(index=0, delta=delta, finish_reason=finish)
            return ChatCompletionChunk(object="chat.completion.chunk", choices=[choice], **meta)

        detok = _Detokenizer(self._client.local_runner().decode)
        yield chunk(ChoiceDelta(role="assistant", content=""))
        for ids, sources in answer:
            yield chunk(ChoiceDelta(content=detok.push(ids), xedge_tokens=self._tokens(ids, sources)))
        r = answer.result
        assert r is not None
        yield chunk(ChoiceDelta(), FINISH[r.finish_reason])
        if req.include_usage:
            yield ChatCompletionChunk(object="chat.completion.chunk", choices=[], usage=_usage(n_prompt, r), **meta)


class Chat:
    def __init__(self, client: EdgeClient) -> None:
        self.completions = Completions(client)


__all__ = ["Chat", "ChatCompletionStream", "Completions", "SessionConfig"]
