"""The local model runner: one small interface so transformers, ONNX Runtime or llama.cpp can back it.

Contract (every runner):
- holds one sequence and its KV cache; ``length`` is the number of tokens in the cache;
- ``prefill(ids)`` drops whatever it held, runs ``ids`` and returns the step output at the last position;
- ``append(ids)`` extends the held sequence by ``ids`` (at least one) and returns the output at the last;
- ``truncate(length)`` forgets positions ``>= length`` (rolls back rejected drafts) without recomputing;
- ``teacher_forced(ids)`` scores a whole sequence in one pass, leaving the held state undefined
  (training data for the MLP router);
- the tokenizer side: ``encode`` (no special tokens unless asked), ``decode``, ``eos_token_ids``,
  ``vocab_size`` and ``tokenizer_fingerprint`` (equal fingerprints = identical token ids for any text).

Logits and hidden states are float32 numpy arrays so gates need no torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StepOutput:
    """What the model says about the next token. ``logits: [V]``, ``hidden: [H]`` (last layer, last
    position, after the final norm)."""

    logits: np.ndarray
    hidden: np.ndarray

    @property
    def greedy_token(self) -> int:
        return int(np.argmax(self.logits))


@dataclass(frozen=True)
class TeacherForced:
    """One pass over a whole sequence: ``logits: [T, V]`` and ``hidden: [T, H]``; row i predicts token i+1."""

    logits: np.ndarray
    hidden: np.ndarray


class ModelRunner(ABC):
    """A causal LM with a KV cache over one sequence, plus its tokenizer. See the module docstring."""

    @property
    @abstractmethod
    def length(self) -> int: ...

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @property
    @abstractmethod
    def hidden_size(self) -> int: ...

    @property
    @abstractmethod
    def eos_token_ids(self) -> frozenset[int]: ...

    @property
    @abstractmethod
    def tokenizer_fingerprint(self) -> str: ...

    @abstractmethod
    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]: ...

    @abstractmethod
    def decode(self, ids: list[int]) -> str: ...

    @abstractmethod
    def prefill(self, ids: list[int]) -> StepOutput: ...

    @abstractmethod
    def append(self, ids: list[int]) -> StepOutput: ...

    @abstractmethod
    def truncate(self, length: int) -> None: ...

    @abstractmethod
    def teacher_forced(self, ids: list[int]) -> TeacherForced: ...

    def apply_chat_template(self, user_text: str) -> list[int]:
        """Prompt ids for one user turn; runners without a chat template use the raw text with BOS."""
        return self.encode(user_text, add_special_tokens=True)
