"""The committed prefix of a session, as an immutable value: ``append`` / ``truncate`` return a new one.

The router builds the new content, runs the engine on it, and only then swaps it into the session, so a
failed request leaves the session untouched.

- :class:`TokenContent` (token mode): the edge's token ids, verbatim.
- :class:`TextContent` (text mode): the committed text plus the cloud's own ids for all of it but a short
  tail. Appended text is tokenised together with that tail; all but the last ``holdback`` tokens are
  frozen (a frozen cloud token never changes again, so vLLM's prefix cache keeps serving it) and the
  rest stays re-tokenisable text, encoded afresh for each engine call.

The session's mode (token or text) is chosen once, when its content is opened (:data:`CONTENT_BY_MODE`);
every later step asks the content (``extend``, ``units``, ``produced``, ``truncate``, ``verify_method``)
instead of branching on the mode.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from client_edge.protocol import (
    CHECKPOINT_INTERVAL,
    CloudToken,
    CreateSessionRequest,
    PrefixRef,
    SamplingSettings,
    SessionMode,
    TokenPrefixHasher,
    text_prefix_hash,
)
from router.errors import RouterError
from router.tokenizer import CloudTokenizer

#: How a verify of this content is decided (a key of ``router.verification.STRATEGIES``).
VerifyMethod = Literal["greedy", "rejection", "text"]


def check_ids(ids: Sequence[int], tok: CloudTokenizer, what: str) -> None:
    """``token_out_of_vocab`` unless every id is a valid id of the cloud vocabulary."""
    bad = next((t for t in ids if not 0 <= t < tok.vocab_size), None)
    if bad is not None:
        raise RouterError(
            "token_out_of_vocab", f"{what} holds token id {bad}; the cloud vocabulary has ids 0..{tok.vocab_size - 1}"
        )


class Content(abc.ABC):
    """Contract: ``length`` (units of the mode), ``hash`` of the committed prefix, ``checkpoints``
    (refs at multiples of CHECKPOINT_INTERVAL), ``prompt_ids`` (the cloud token ids the engine gets for
    the committed prefix), ``cloud_tokens`` (frozen cloud ids held).

    Per mode: ``open`` builds the content of a create request; ``extend`` appends a request's delta;
    ``units`` picks a request's draft or proposal in the mode's units (ids or text); ``produced`` is
    the cloud's output in those units; ``truncate`` keeps ``length`` units; ``verify_method`` names the
    verify strategy. Each raises ``mode_mismatch`` when a request fills the other mode's field."""

    mode: ClassVar[SessionMode]

    @classmethod
    @abc.abstractmethod
    def open(cls, req: CreateSessionRequest, tok: CloudTokenizer, *, fingerprint: str, holdback: int) -> Content: ...

    @abc.abstractmethod
    def extend(self, new_token_ids: Sequence[int], new_text: str, tok: CloudTokenizer) -> Content: ...

    @abc.abstractmethod
    def units(self, ids: Sequence[int], text: str, what: str, tok: CloudTokenizer) -> Sequence[int] | str: ...

    @abc.abstractmethod
    def produced(self, tokens: Sequence[CloudToken]) -> Sequence[int] | str: ...

    @abc.abstractmethod
    def truncate(self, length: int, tok: CloudTokenizer) -> Content: ...

    @abc.abstractmethod
    def verify_method(self, sampling: SamplingSettings) -> VerifyMethod: ...

    @property
    @abc.abstractmethod
    def length(self) -> int: ...

    @property
    @abc.abstractmethod
    def hash(self) -> str: ...

    @abc.abstractmethod
    def checkpoints(self) -> list[PrefixRef]: ...

    @abc.abstractmethod
    def prompt_ids(self, tok: CloudTokenizer) -> list[int]: ...

    @property
    @abc.abstractmethod
    def cloud_tokens(self) -> int: ...

    def ref(self) -> PrefixRef:
        return PrefixRef(length=self.length, hash=self.hash)


@dataclass(frozen=True)
class TokenContent(Content):
    ids: tuple[int, ...]
    _hasher: TokenPrefixHasher
    mode: ClassVar[SessionMode] = "token"

    @classmethod
    def of(cls, ids: Sequence[int]) -> TokenContent:
        return cls(tuple(ids), TokenPrefixHasher().update(ids))

    @classmethod
    def open(cls, req: CreateSessionRequest, tok: CloudTokenizer, *, fingerprint: str, holdback: int) -> TokenContent:
        if req.tokenizer_fingerprint != fingerprint:
            raise RouterError(
                "fingerprint_mismatch",
                f"tokenizer fingerprint {req.tokenizer_fingerprint!r} differs from the cloud's "
                f"{fingerprint!r}: use mode 'text' for a different tokenizer",
            )
        check_ids(req.prompt_token_ids, tok, "prompt_token_ids")
        return cls.of(req.prompt_token_ids)

    def extend(self, new_token_ids: Sequence[int], new_text: str, tok: CloudTokenizer) -> TokenContent:
        if new_text:
            raise RouterError("mode_mismatch", "session is in token mode: send new_token_ids, not new_text")
        check_ids(new_token_ids, tok, "new_token_ids")
        return self.append(new_token_ids)

    def units(self, ids: Sequence[int], text: str, what: str, tok: CloudTokenizer) -> Sequence[int]:
        if text:
            raise RouterError("mode_mismatch", f"session is in token mode: send {what}_token_ids, not {what}_text")
        check_ids(ids, tok, f"{what}_token_ids")
        return ids

    def produced(self, tokens: Sequence[CloudToken]) -> list[int]:
        return [t.token_id for t in tokens]

    def verify_method(self, sampling: SamplingSettings) -> VerifyMethod:
        return "greedy" if sampling.greedy else "rejection"

    @property
    def length(self) -> int:
        return len(self.ids)

    @property
    def hash(self) -> str:
        return self._hasher.hexdigest()

    @property
    def cloud_tokens(self) -> int:
        return len(self.ids)

    def checkpoints(self) -> list[PrefixRef]:
        h, out = TokenPrefixHasher(), []
        for start in range(0, len(self.ids) - CHECKPOINT_INTERVAL + 1, CHECKPOINT_INTERVAL):
            h.update(self.ids[start : start + CHECKPOINT_INTERVAL])
            out.append(PrefixRef(length=start + CHECKPOINT_INTERVAL, hash=h.hexdigest()))
        return out

    def prompt_ids(self, tok: CloudTokenizer) -> list[int]:
        return list(self.ids)

    def append(self, ids: Sequence[int]) -> TokenContent:
        return TokenContent(self.ids + tuple(ids), self._hasher.copy().update(ids))

    def truncate(self, length: int, tok: CloudTokenizer) -> TokenContent:
        return TokenContent.of(self.ids[:length])


@dataclass(frozen=True)
class TextContent(Content):
    """``ids[i]`` covers text up to character ``ends[i]`` (start tokens such as BOS end at 0);
    ``text[frozen_chars:]`` is the re-tokenisable tail."""

    text: str
    ids: tuple[int, ...]
    ends: tuple[int, ...]
    holdback: int
    n_start: int  # leading special tokens (BOS) that cover no text
    mode: ClassVar[SessionMode] = "text"

    @classmethod
    def start(cls, tok: CloudTokenizer, holdback: int) -> TextContent:
        return cls("", tuple(tok.start_ids), tuple(0 for _ in tok.start_ids), holdback, len(tok.start_ids))

    @classmethod
    def open(cls, req: CreateSessionRequest, tok: CloudTokenizer, *, fingerprint: str, holdback: int) -> TextContent:
        return cls.start(tok, holdback).append(req.prompt_text, tok)

    def extend(self, new_token_ids: Sequence[int], new_text: str, tok: CloudTokenizer) -> TextContent:
        if new_token_ids:
            raise RouterError("mode_mismatch", "session is in text mode: send new_text, not new_token_ids")
        return self.append(new_text, tok) if new_text else self

    def units(self, ids: Sequence[int], text: str, what: str, tok: CloudTokenizer) -> str:
        if ids:
            raise RouterError("mode_mismatch", f"session is in text mode: send {what}_text, not {what}_token_ids")
        return text

    def produced(self, tokens: Sequence[CloudToken]) -> str:
        return "".join(t.text for t in tokens)

    def verify_method(self, sampling: SamplingSettings) -> VerifyMethod:
        return "text"

    @property
    def length(self) -> int:
        return len(self.text)

    @property
    def hash(self) -> str:
        return text_prefix_hash(self.text)

    @property
    def cloud_tokens(self) -> int:
        return len(self.ids)

    @property
    def frozen_chars(self) -> int:
        return self.ends[-1] if self.ends else 0

    def checkpoints(self) -> list[PrefixRef]:
        return [
            PrefixRef(length=n, hash=text_prefix_hash(self.text[:n]))
            for n in range(CHECKPOINT_INTERVAL, len(self.text) + 1, CHECKPOINT_INTERVAL)
        ]

    def prompt_ids(self, tok: CloudTokenizer) -> list[int]:
        tail = self.text[self.frozen_chars :]
        return list(self.ids) + (tok.encode(tail) if tail else [])

    def append(self, piece: str, tok: CloudTokenizer) -> TextContent:
        base = self.frozen_chars
        tail = self.text[base:] + piece
        ids, offsets = tok.encode_with_offsets(tail)
        keep = max(0, len(ids) - self.holdback)
        # Freeze only a prefix whose decoding is exactly the text it covers (byte-level tokens can
        # split a character; such a cut is not a clean boundary).
        # Decoded after the previous frozen tokens, since some tokenizers drop a leading space at the
        # start of a decode.
        ctx = list(self.ids[-4:])
        ctx_text = tok.decode(ctx)
        while keep > 0 and tok.decode(ctx + ids[:keep]) != ctx_text + tail[: offsets[keep - 1][1]]:
            keep -= 1
        new_ends = tuple(base + offsets[i][1] for i in range(keep))
        return TextContent(
            self.text + piece, self.ids + tuple(ids[:keep]), self.ends + new_ends, self.holdback, self.n_start
        )

    def truncate(self, length: int, tok: CloudTokenizer) -> TextContent:
        n = len(self.ends)
        while n > 0 and self.ends[n - 1] > length:
            n -= 1
        # Offsets can under-report a token's extent (trimmed whitespace): keep only a prefix whose
        # decoding is exactly the text it claims to cover; the rest becomes re-tokenisable tail again.
        n = max(n, self.n_start)
        while n > self.n_start and tok.decode(self.ids[self.n_start : n]) != self.text[: self.ends[n - 1]]:
            n -= 1
        return TextContent(self.text[:length], self.ids[:n], self.ends[:n], self.holdback, self.n_start)


#: The content class of each session mode: the one place the mode is looked at.
CONTENT_BY_MODE: dict[SessionMode, type[Content]] = {TokenContent.mode: TokenContent, TextContent.mode: TextContent}
