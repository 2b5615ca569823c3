"""How the edge's token ids map to what the cloud session holds, per session mode (chosen once per answer).

``TokenBridge`` (same tokenizer): the cloud holds ``prompt_ids + generated`` and answers in ids.
``TextBridge`` (different tokenizers): the cloud holds ``cloud_prompt_text + text(generated)`` and
answers in text, which the edge re-tokenises with its own tokenizer. Only *stable* text is ever sent:
a trailing U+FFFD (an incomplete UTF-8 sequence split across tokens) waits until the next token
completes it, so committed text never changes once the cloud has it.

The committed transcript (``units``) is kept incrementally: ``generated`` only grows during an answer,
so each call appends what was committed since the last one instead of rebuilding the whole prefix. The
returned units are read-only to the caller and valid until the next commit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from client_edge.errors import CloudProtocolError
from client_edge.protocol import CloudToken, SessionMode, VerifyResponse
from client_edge.runner.base import ModelRunner


class Bridge(ABC):
    mode: ClassVar[SessionMode]

    @abstractmethod
    def units(self, generated: list[int]) -> list[int] | str:
        """The committed prefix as the cloud session should hold it (``generated`` only grows)."""

    @abstractmethod
    def proposal(self, ids: list[int], generated: list[int]) -> list[int] | str:
        """Edge tokens that would follow the committed prefix, as the cloud sees them."""

    @abstractmethod
    def cloud_ids(self, tokens: list[CloudToken], text: str, generated: list[int]) -> list[int]:
        """Edge ids for an escalation answer."""

    @abstractmethod
    def verified_ids(
        self, draft: list[int], resp: VerifyResponse, generated: list[int]
    ) -> tuple[int, list[int]]:
        """(number of draft tokens kept, edge ids that follow them: the cloud's correction)."""

    @abstractmethod
    def cloud_ended(self, finish_reason: str) -> bool:
        """Whether a cloud answer with this ``finish_reason`` ends the edge's answer beyond the ids it
        returned (text mode: the cloud's EOS has no text, so no committed id says so)."""


class TokenBridge(Bridge):
    mode = "token"

    def __init__(self, prompt_ids: list[int]) -> None:
        self._units = list(prompt_ids)
        self._prompt_len = len(self._units)

    def units(self, generated: list[int]) -> list[int]:
        have = len(self._units) - self._prompt_len
        if len(generated) < have:
            raise ValueError(f"the committed answer shrank from {have} to {len(generated)} tokens")
        self._units.extend(generated[have:])
        return self._units

    def proposal(self, ids: list[int], generated: list[int]) -> list[int]:
        return list(ids)

    def cloud_ids(self, tokens: list[CloudToken], text: str, generated: list[int]) -> list[int]:
        return [t.token_id for t in tokens]

    def verified_ids(
        self, draft: list[int], resp: VerifyResponse, generated: list[int]
    ) -> tuple[int, list[int]]:
        if not 0 <= resp.accepted <= len(draft):
            raise CloudProtocolError(f"cloud accepted {resp.accepted} of a {len(draft)}-token draft")
        return resp.accepted, [] if resp.correction is None else [resp.correction.token_id]

    def cloud_ended(self, finish_reason: str) -> bool:
        return False  # the cloud's EOS id is committed like any id and ends the answer there


class TextBridge(Bridge):
    mode = "text"

    def __init__(self, runner: ModelRunner, cloud_prompt_text: str) -> None:
        self.runner = runner
        self.prompt = cloud_prompt_text
        self._n_ids = 0  # generated ids the cached text covers
        self._text = cloud_prompt_text

    def _stable(self, ids: list[int]) -> str:
        return self.runner.decode(ids).rstrip("\ufffd")

    def units(self, generated: list[int]) -> str:
        # A tokenizer's decode of a sequence is not the concatenation of its pieces' decodes (leading
        # spaces, byte fallback), so the answer's text is decoded whole, once per commit.
        if len(generated) != self._n_ids:
            self._text, self._n_ids = self.prompt + self._stable(generated), len(generated)
        return self._text

    def proposal(self, ids: list[int], generated: list[int]) -> str:
        return self._stable(generated + ids)[len(self.units(generated)) - len(self.prompt) :]

    def cloud_ids(self, tokens: list[CloudToken], text: str, generated: list[int]) -> list[int]:
        return self.runner.encode(text) if text else []

    def verified_ids(
        self, draft: list[int], resp: VerifyResponse, generated: list[int]
    ) -> tuple[int, list[int]]:
        base = len(self.units(generated)) - len(self.prompt)
        full = self._stable(generated + draft)[base:]
        chars = resp.accepted
        if not 0 <= chars <= len(full):
            raise CloudProtocolError(f"cloud accepted {chars} code points of a {len(full)}-code-point draft")
        kept = 0  # whole draft tokens whose text lies inside the accepted code points
        while kept < len(draft) and len(self._stable(generated + draft[: kept + 1])) - base <= chars:
            kept += 1
        covered = len(self._stable(generated + draft[:kept])) - base
        tail = full[covered:chars] + ("" if resp.correction is None else resp.correction.text)
        return kept, self.runner.encode(tail) if tail else []

    def cloud_ended(self, finish_reason: str) -> bool:
        return finish_reason == "stop"


def make_bridge(
    mode: SessionMode, runner: ModelRunner, prompt_ids: list[int], cloud_prompt_text: str | None
) -> Bridge:
    if mode == "token":
        return TokenBridge(prompt_ids)
    return TextBridge(runner, runner.decode(prompt_ids) if cloud_prompt_text is None else cloud_prompt_text)
