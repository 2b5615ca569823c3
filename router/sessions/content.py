"""The committed prefix of a session, as an immutable value: ``append`` / ``truncate`` return a new one.

The router builds the new content, runs the engine on it, and only then swaps it into the session, so a
failed request leaves the session untouched.

- :class:`TokenContent` (token mode): the edge's token ids, verbatim.
- :class:`TextContent` (text mode): the committed text plus the cloud's own ids for all of it but a short
  tail. Appended text is tokenised together with that tail; all but the last ``holdback`` tokens are
  frozen (a frozen cloud token never changes again, so vLLM's prefix cache keeps serving it) and the
  rest stays re-tokenisable text, encoded afresh for each engine call.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

from client_edge.protocol import (
    CHECKPOINT_INTERVAL,
    PrefixRef,
    TokenPrefixHasher,
    text_prefix_hash,
)
from router.tokenizer import CloudTokenizer


class Content(abc.ABC):
    """Contract: ``length`` (units of the mode), ``hash`` of the committed prefix, ``checkpoints``
    (refs at multiples of CHECKPOINT_INTERVAL), ``prompt_ids`` (the cloud token ids the engine gets for
    the committed prefix), ``cloud_tokens`` (frozen cloud ids held)."""

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

    @classmethod
    def of(cls, ids: Sequence[int]) -> TokenContent:
        return cls(tuple(ids), TokenPrefixHasher().update(ids))

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

    def truncate(self, length: int) -> TokenContent:
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

    @classmethod
    def start(cls, tok: CloudTokenizer, holdback: int) -> TextContent:
        return cls("", tuple(tok.start_ids), tuple(0 for _ in tok.start_ids), holdback, len(tok.start_ids))

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
