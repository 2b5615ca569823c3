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

Logits and hidden states are float32 numpy arrays so gates need no torch. A runner that cannot expose
hidden states (llama.cpp) says so with ``provides_hidden_states = False``; its steps carry
``hidden=None`` and a gate that needs them is refused before generation
(``client_edge.errors.HiddenStatesUnavailableError``). ``context_length`` (None = unbounded) bounds
``prompt + generated``; a longer request is a ``ContextLengthError``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from client_edge.errors import ContextLengthError


@dataclass(frozen=True)
class StepOutput:
    """What the model says about the next token. ``logits: [V]``, ``hidden: [H]`` (last layer, last
    position, after the final norm; None from a runner that does not expose hidden states)."""

    logits: np.ndarray
    hidden: np.ndarray | None

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

    provides_hidden_states: bool = True
    #: a short name of the local model (the OpenAI-shaped interface reports it as ``model``)
    model_name: str = "local"

    @property
    def context_length(self) -> int | None:
        """Most tokens the runner can hold (prompt + generated); None = no limit known."""
        return None

    def check_fits(self, n_tokens: int, what: str = "the sequence") -> None:
        limit = self.context_length
        if limit is not None and n_tokens > limit:
            raise ContextLengthError(
                f"{what} needs {n_tokens} tokens; the local model's context holds {limit} "
                f"({type(self).__name__}, {self.model_name})"
            )

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
        """Prompt ids for one user turn."""
        return self.apply_chat([{"role": "user", "content": user_text}])

    def apply_chat(self, messages: list[dict[str, str]]) -> list[int]:
        """Prompt ids for a conversation (``role``/``content`` dicts) ending with the assistant's turn to
        speak; runners without a chat template join the contents, one per line, with BOS."""
        return self.encode("\n".join(m["content"] for m in messages), add_special_tokens=True)
