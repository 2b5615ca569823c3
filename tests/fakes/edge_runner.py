"""A deterministic toy language model with a KV "cache" (the token list) for fast SDK tests, and the same
toy model as the cloud behind the real router (``ToyCloudEngine`` + ``ToyTokenizer`` for ``create_app``).

Vocabulary: 39 single characters, 4 bigrams (so re-tokenising text is not trivially 1:1), and EOS.
The edge model is confident except at every fifth position, where the cloud model (``cloud_next``)
disagrees with it: escalating exactly there changes the answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from client_edge.protocol import FINGERPRINT_PROBE_TEXT, fingerprint_probe_ids, tokenizer_fingerprint
from client_edge.runner.base import ModelRunner, StepOutput, TeacherForced
from router.tokenizer import CloudTokenizer
from tests.fakes.engine import FakeEngine

CHARS = "abcdefghijklmnopqrstuvwxyz0123456789 .,"
BIGRAMS = ["th", "he", " a", "in"]
VOCAB = list(CHARS) + BIGRAMS
EOS = len(VOCAB)
V = EOS + 1
HIDDEN = 8


def edge_next(ids: list[int]) -> int:
    return (ids[-1] * 3 + len(ids)) % EOS


def uncertain(ids: list[int]) -> bool:
    return len(ids) % 5 == 0


def cloud_next(ids: list[int]) -> int:
    return (edge_next(ids) + 1) % EOS if uncertain(ids) else edge_next(ids)


class FakeRunner(ModelRunner):
    def __init__(self, eos_at_length: int | None = None) -> None:
        self.ids: list[int] = []
        self.eos_at_length = eos_at_length
        self.forward_tokens = 0
        self.truncations = 0

    def _out(self) -> StepOutput:
        logits = np.zeros(V, dtype=np.float32)
        if self.eos_at_length is not None and len(self.ids) >= self.eos_at_length:
            logits[EOS] = 20.0
        else:
            logits[edge_next(self.ids)] = 0.5 if uncertain(self.ids) else 12.0
        hidden = np.zeros(HIDDEN, dtype=np.float32)
        hidden[len(self.ids) % HIDDEN] = 1.0
        hidden[0] += 5.0 if uncertain(self.ids) else -5.0
        return StepOutput(logits=logits, hidden=hidden)

    @property
    def length(self) -> int:
        return len(self.ids)

    @property
    def vocab_size(self) -> int:
        return V

    @property
    def hidden_size(self) -> int:
        return HIDDEN

    @property
    def eos_token_ids(self) -> frozenset[int]:
        return frozenset({EOS})

    @property
    def tokenizer_fingerprint(self) -> str:
        probe = self.encode(FINGERPRINT_PROBE_TEXT)
        return tokenizer_fingerprint(V, probe, self.decode(fingerprint_probe_ids(V)))

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        out, i = [], 0
        while i < len(text):
            if text[i : i + 2] in BIGRAMS:
                out.append(VOCAB.index(text[i : i + 2]))
                i += 2
            else:
                c = text[i]
                out.append(
                    VOCAB.index(c) if c in VOCAB else int(hashlib.md5(c.encode()).hexdigest(), 16) % 39
                )
                i += 1
        return out

    def decode(self, ids: list[int]) -> str:
        return "".join(VOCAB[i] for i in ids if i != EOS)

    def prefill(self, ids: list[int]) -> StepOutput:
        self.ids = []
        return self.append(ids)

    def append(self, ids: list[int]) -> StepOutput:
        assert ids, "append needs ids"
        self.ids.extend(ids)
        self.forward_tokens += len(ids)
        return self._out()

    def truncate(self, length: int) -> None:
        assert 0 < length <= len(self.ids)
        self.ids = self.ids[:length]
        self.truncations += 1

    def teacher_forced(self, ids: list[int]) -> TeacherForced:
        outs = []
        for i in range(1, len(ids) + 1):
            self.ids = ids[:i]
            outs.append(self._out())
        return TeacherForced(np.stack([o.logits for o in outs]), np.stack([o.hidden for o in outs]))


def cloud_greedy(prompt: list[int], n: int) -> list[int]:
    """What the cloud alone answers greedily (the speculative-equals-cloud invariant)."""
    ids = list(prompt)
    for _ in range(n):
        ids.append(cloud_next(ids))
    return ids[len(prompt) :]



# ----------------------------------------------------------------------------------------------------
# The same toy model as the cloud behind the real router (``router.app.create_app`` over the router's fake
# engine): the SDK is tested against the router as it is, not against a second implementation of it.


class ToyTokenizer(CloudTokenizer):
    """``FakeRunner``'s tokenizer seen from the cloud (same ids, so the same fingerprint)."""

    def __init__(self) -> None:
        self._runner = FakeRunner()
        self.vocab_size = V
        self.start_ids: list[int] = []
        self.eos_token_ids = frozenset({EOS})

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        ids = self._runner.encode(text)
        offsets, at = [], 0
        for i in ids:
            width = 2 if VOCAB[i] in BIGRAMS else 1
            offsets.append((at, at + width))
            at += width
        return ids, offsets

    def encode(self, text: str) -> list[int]:
        return self._runner.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self._runner.decode(list(ids))


class CharCloudTokenizer(ToyTokenizer):
    """A tokenizer the edge does not share (one token per character, no bigrams): text mode."""

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        ids = [VOCAB.index(c) if c in VOCAB else 0 for c in text]
        return ids, [(i, i + 1) for i in range(len(text))]

    def encode(self, text: str) -> list[int]:
        return self.encode_with_offsets(text)[0]


class ToyCloudEngine(FakeEngine):
    """The router's fake engine whose greedy next token is ``cloud_next`` (usage from its block cache).
    ``eos_at``: from this context length on, the cloud says EOS."""

    def __init__(self, block_size: int = 4, eos_at: int | None = None) -> None:
        super().__init__(V, block_size=block_size, max_model_len=4096)
        self.eos = EOS
        self.eos_at = eos_at

    def logprobs(self, context: Sequence[int]) -> list[float]:
        want = EOS if self.eos_at is not None and len(context) >= self.eos_at else cloud_next(list(context))
        return [0.0 if i == want else -30.0 for i in range(self.vocab)]


def cloud_text(prompt_text: str, n_chars: int) -> str:
    """What the text-mode toy cloud (``CharCloudTokenizer``) answers greedily after ``prompt_text``, one
    token per step: the router re-tokenises committed text, so the cloud's context is always the
    character ids of the whole text (a bigram token it produced comes back as two characters)."""
    out = ""
    while len(out) < n_chars:
        ids = [VOCAB.index(c) if c in VOCAB else 0 for c in prompt_text + out]
        out += VOCAB[cloud_next(ids)]
    return out[:n_chars]
