"""The cloud model's tokenizer, as the router needs it: fingerprint, vocabulary size, encode/decode.

Only the tokenizer is loaded (transformers ``AutoTokenizer``, which needs no torch), lazily, from the
model directory. Its fingerprint is computed by :func:`client_edge.protocol.tokenizer_fingerprint`
exactly as an edge client computes its own, so equal fingerprints mean equal token ids.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from client_edge.protocol import FINGERPRINT_PROBE_TEXT, fingerprint_probe_ids, tokenizer_fingerprint


class CloudTokenizer(abc.ABC):
    """Contract: ``vocab_size`` ids are valid (0..vocab_size-1); ``encode`` adds no special tokens;
    ``start_ids`` are the special tokens a fresh prompt starts with (e.g. BOS, possibly none);
    ``decode`` keeps special tokens; ``encode_with_offsets`` returns per-token (start, end) character
    offsets into the text; ``eos_token_ids`` end generation."""

    vocab_size: int
    start_ids: list[int]
    eos_token_ids: frozenset[int]

    @abc.abstractmethod
    def encode(self, text: str) -> list[int]: ...

    @abc.abstractmethod
    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]: ...

    @abc.abstractmethod
    def decode(self, ids: Sequence[int]) -> str: ...

    @property
    def fingerprint(self) -> str:
        probe = fingerprint_probe_ids(self.vocab_size)
        return tokenizer_fingerprint(self.vocab_size, self.encode(FINGERPRINT_PROBE_TEXT), self.decode(probe))

    def token_texts(self, context: Sequence[int], ids: Sequence[int]) -> list[str]:
        """Text each of ``ids`` adds after ``context`` (incremental detokenisation; a token that ends
        inside a multi-byte character gets "" and the next one carries the whole character)."""
        ctx = list(context[-4:])
        prev = self.decode(ctx)
        out: list[str] = []
        for i in range(len(ids)):
            cur = self.decode(ctx + list(ids[: i + 1]))
            if cur.endswith("\ufffd"):
                out.append("")
                continue
            out.append(cur[len(prev) :] if cur.startswith(prev) else cur[len(prev) :])
            prev = cur
        return out


class HFTokenizer(CloudTokenizer):
    """A transformers tokenizer loaded from a model directory."""

    def __init__(self, tok: Any) -> None:
        self._tok = tok
        self.vocab_size = len(tok)
        self.start_ids = list(tok("", add_special_tokens=True)["input_ids"])
        eos = tok.eos_token_id
        self.eos_token_ids = frozenset([eos] if isinstance(eos, int) else list(eos or []))

    @classmethod
    def load(cls, directory: Path) -> HFTokenizer:
        try:
            from transformers import AutoTokenizer  # heavy import kept out of module import time
        except ImportError as exc:
            raise ImportError(
                "the router loads the cloud tokenizer with transformers (torch is not needed): "
                "pip install 'transformers>=4.50,<5.20'"
            ) from exc

        if not (directory / "tokenizer_config.json").exists() and not (directory / "tokenizer.json").exists():
            raise FileNotFoundError(f"no tokenizer files in {directory} (set tokenizer_dir in the router settings)")
        return cls(AutoTokenizer.from_pretrained(str(directory)))

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False))

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        enc = self._tok(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [(int(a), int(b)) for a, b in enc["offset_mapping"]]

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids))
