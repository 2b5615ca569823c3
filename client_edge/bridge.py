"""How the edge's token ids map to what the cloud session holds, per session mode.

``TokenBridge`` (same tokenizer): the cloud holds ``prompt_ids + generated`` and answers in ids.
``TextBridge`` (different tokenizers): the cloud holds ``cloud_prompt_text + text(generated)`` and
answers in text, which the edge re-tokenises with its own tokenizer. Only *stable* text is ever sent:
a trailing U+FFFD (an incomplete UTF-8 sequence split across tokens) waits until the next token
completes it, so committed text never changes once the cloud has it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from client_edge.protocol import CloudToken, SessionMode, VerifyResponse
from client_edge.runner.base import ModelRunner


class Bridge(ABC):
    @abstractmethod
    def units(self, generated: list[int]) -> list[int] | str:
        """The committed prefix as the cloud session should hold it."""

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


class TokenBridge(Bridge):
    def __init__(self, prompt_ids: list[int]) -> None:
        self.prompt_ids = list(prompt_ids)

    def units(self, generated: list[int]) -> list[int]:
        return self.prompt_ids + generated

    def proposal(self, ids: list[int], generated: list[int]) -> list[int]:
        return list(ids)

    def cloud_ids(self, tokens: list[CloudToken], text: str, generated: list[int]) -> list[int]:
        return [t.token_id for t in tokens]

    def verified_ids(
        self, draft: list[int], resp: VerifyResponse, generated: list[int]
    ) -> tuple[int, list[int]]:
        if not 0 <= resp.accepted <= len(draft):
            raise ValueError(f"cloud accepted {resp.accepted} of a {len(draft)}-token draft")
        return resp.accepted, [] if resp.correction is None else [resp.correction.token_id]


class TextBridge(Bridge):
    def __init__(self, runner: ModelRunner, cloud_prompt_text: str) -> None:
        self.runner = runner
        self.prompt = cloud_prompt_text

    def _stable(self, ids: list[int]) -> str:
        return self.runner.decode(ids).rstrip("\ufffd")

    def units(self, generated: list[int]) -> str:
        return self.prompt + self._stable(generated)

    def proposal(self, ids: list[int], generated: list[int]) -> str:
        return self._stable(generated + ids)[len(self._stable(generated)) :]

    def cloud_ids(self, tokens: list[CloudToken], text: str, generated: list[int]) -> list[int]:
        return self.runner.encode(text) if text else []

    def verified_ids(
        self, draft: list[int], resp: VerifyResponse, generated: list[int]
    ) -> tuple[int, list[int]]:
        base = len(self._stable(generated))
        full = self._stable(generated + draft)[base:]
        chars = resp.accepted
        if not 0 <= chars <= len(full):
            raise ValueError(f"cloud accepted {chars} code points of a {len(full)}-code-point draft")
        kept = 0  # whole draft tokens whose text lies inside the accepted code points
        while kept < len(draft) and len(self._stable(generated + draft[: kept + 1])) - base <= chars:
            kept += 1
        covered = len(self._stable(generated + draft[:kept])) - base
        tail = full[covered:chars] + ("" if resp.correction is None else resp.correction.text)
        return kept, self.runner.encode(tail) if tail else []


def make_bridge(
    mode: SessionMode, runner: ModelRunner, prompt_ids: list[int], cloud_prompt_text: str | None
) -> Bridge:
    if mode == "token":
        return TokenBridge(prompt_ids)
    return TextBridge(runner, runner.decode(prompt_ids) if cloud_prompt_text is None else cloud_prompt_text)
