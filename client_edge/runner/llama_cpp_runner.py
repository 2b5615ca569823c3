"""ModelRunner on llama.cpp (``llama-cpp-python``): runs a GGUF file directly, as edge devices do.

- One sequence in llama.cpp's KV cache. ``append`` decodes only the new tokens; ``truncate`` removes
  the cache cells at positions ``>= length`` (``llama_memory_seq_rm``), so rejected drafts cost nothing
  to roll back.
- Each step returns the full-vocabulary logits of the last position (float32), so every logits-only gate
  works. llama.cpp does not expose the decoder's last hidden state next to generation: steps carry
  ``hidden=None``, ``provides_hidden_states`` is False, and the ``mlp`` gate is refused
  (``HiddenStatesUnavailableError``); ``teacher_forced`` (MLP training data) likewise.
- The tokenizer is the GGUF's own (llama.cpp's), or, with ``tokenizer_json``, a Hugging Face
  ``tokenizer.json`` (the ``tokenizers`` library, no torch) over the same vocabulary: llama.cpp's
  pre-tokenizer can split text differently from the cloud's (SmolLM2: ``"\n\n\t"`` is one token for
  llama.cpp, two for Hugging Face), so its fingerprint differs and token mode against a cloud that
  tokenises with Hugging Face needs the cloud's ``tokenizer.json`` (else ``TokenizerMismatchError``;
  text mode works either way). The chat template is the GGUF's ``tokenizer.chat_template``, rendered with
  jinja2 as transformers does.
- Before loading, the GGUF header is read (``gguf``): a file that is not GGUF, or a model that is not a
  causal LM (an encoder / embedding model), is a typed ``ModelFileError`` / ``NotACausalLMError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from client_edge.errors import HiddenStatesUnavailableError, ModelFileError, NotACausalLMError
from client_edge.protocol import FINGERPRINT_PROBE_TEXT, fingerprint_probe_ids
from client_edge.protocol import tokenizer_fingerprint as protocol_fingerprint
from client_edge.runner.base import ModelRunner, StepOutput, TeacherForced

#: GGUF architectures of encoder-only / embedding models (no next-token head to generate with).
ENCODER_ARCHS = frozenset({"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "t5encoder",
                           "neo-bert", "modern-bert", "roberta", "xlm-roberta"})  # fmt: skip


@dataclass(frozen=True)
class LlamaCppRunnerConfig:
    """``gguf_path``: the model file. ``n_ctx``: KV cache size in tokens (0 = the model's trained
    context). ``n_threads``: CPU threads for decoding and prompt processing (None = llama.cpp's
    default). ``n_batch``: tokens per decode call when prefilling. ``tokenizer_json``: tokenise with this
    Hugging Face tokenizer file instead of llama.cpp's (same vocabulary; see the module docstring)."""

    gguf_path: Path
    n_ctx: int = 4096
    n_threads: int | None = None
    n_batch: int = 512
    tokenizer_json: Path | None = None

    def __post_init__(self) -> None:
        if not Path(self.gguf_path).is_file():
            raise FileNotFoundError(f"gguf_path {self.gguf_path} is not a file")
        if self.n_ctx < 0 or self.n_batch < 1:
            raise ValueError(f"need n_ctx >= 0 and n_batch >= 1, got {self.n_ctx}, {self.n_batch}")
        if self.n_threads is not None and self.n_threads < 1:
            raise ValueError(f"n_threads must be >= 1, got {self.n_threads}")
        if self.tokenizer_json is not None and not Path(self.tokenizer_json).is_file():
            raise FileNotFoundError(f"tokenizer_json {self.tokenizer_json} is not a file")


@dataclass(frozen=True)
class GGUFInfo:
    architecture: str
    name: str
    context_length: int
    chat_template: str | None


def read_gguf_info(path: Path) -> GGUFInfo:
    """Read and check the GGUF header: a causal LM with a tokenizer, else a typed error naming why."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except (ValueError, OSError, IndexError) as exc:
        raise ModelFileError(f"{path} is not a readable GGUF file: {exc}") from exc
    fields = reader.fields

    def get(key: str) -> Any:
        f = fields.get(key)
        return None if f is None else f.contents()

    arch = get("general.architecture")
    if not arch:
        raise ModelFileError(f"{path}: GGUF without general.architecture")
    why = None
    if arch in ENCODER_ARCHS:
        why = f"architecture {arch!r} is an encoder (embedding) model"
    elif get(f"{arch}.attention.causal") is False:
        why = f"{arch}.attention.causal is false (bidirectional attention)"
    elif get(f"{arch}.pooling_type") is not None:
        why = f"{arch}.pooling_type is set: an embedding model"
    elif get("tokenizer.ggml.tokens") is None:
        why = "it has no tokenizer (tokenizer.ggml.tokens)"
    if why is not None:
        raise NotACausalLMError(f"{path} is not a causal language model: {why}")
    return GGUFInfo(
        architecture=str(arch),
        name=str(get("general.name") or Path(path).stem),
        context_length=int(get(f"{arch}.context_length") or 0),
        chat_template=get("tokenizer.chat_template"),
    )


class LlamaCppRunner(ModelRunner):
    provides_hidden_states = False

    def __init__(self, config: LlamaCppRunnerConfig) -> None:
        info = read_gguf_info(Path(config.gguf_path))
        import llama_cpp

        self._lib = llama_cpp
        self.config = config
        self.info = info
        self.model_name = Path(config.gguf_path).stem.split(".")[0]
        n_ctx = config.n_ctx or info.context_length
        if info.context_length and n_ctx > info.context_length:
            n_ctx = info.context_length  # more cells than the model was trained for would be wasted
        self._llm = llama_cpp.Llama(
            model_path=str(config.gguf_path), n_ctx=n_ctx, n_batch=config.n_batch, n_ubatch=config.n_batch,
            n_threads=config.n_threads, n_threads_batch=config.n_threads, logits_all=False, verbose=False,
        )  # fmt: skip
        self._n_vocab = int(self._llm.n_vocab())
        self._hf = None
        if config.tokenizer_json is not None:
            from tokenizers import Tokenizer

            self._hf = Tokenizer.from_file(str(config.tokenizer_json))
            if self._hf.get_vocab_size(with_added_tokens=True) != self._n_vocab:
                raise ModelFileError(
                    f"{config.tokenizer_json} has {self._hf.get_vocab_size(with_added_tokens=True)} tokens, the "
                    f"model {self._n_vocab}: not the same vocabulary"
                )
        self._eos = frozenset(int(t) for t in (self._llm.token_eos(),) if t is not None and t >= 0)
        self._fingerprint = self._compute_fingerprint()
        self._held = False

    # --- tokenizer -------------------------------------------------------------------------------
    def _compute_fingerprint(self) -> str:
        probe = self.encode(FINGERPRINT_PROBE_TEXT)
        return protocol_fingerprint(self._n_vocab, probe, self._decode(fingerprint_probe_ids(self._n_vocab), True))

    @property
    def length(self) -> int:
        return int(self._llm.n_tokens)

    @property
    def vocab_size(self) -> int:
        return self._n_vocab

    @property
    def hidden_size(self) -> int:
        return int(self._llm.n_embd())

    @property
    def eos_token_ids(self) -> frozenset[int]:
        return self._eos

    @property
    def tokenizer_fingerprint(self) -> str:
        return self._fingerprint

    @property
    def context_length(self) -> int:
        # llama.cpp may round its cache up; llama-cpp-python's token buffer keeps the size asked for
        return min(int(self._llm.n_ctx()), len(self._llm.input_ids))

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        if self._hf is not None:
            return list(self._hf.encode(text, add_special_tokens=add_special_tokens).ids)
        return [int(t) for t in self._llm.tokenize(text.encode("utf-8"), add_bos=add_special_tokens, special=False)]

    def decode(self, ids: list[int]) -> str:
        return self._decode(list(ids), False)

    def _decode(self, ids: list[int], special: bool) -> str:
        if self._hf is not None:
            return str(self._hf.decode(ids, skip_special_tokens=not special))
        return self._llm.detokenize(ids, special=special).decode("utf-8", errors="replace")

    def apply_chat(self, messages: list[dict[str, str]]) -> list[int]:
        template = self.info.chat_template
        if not template:
            return super().apply_chat(messages)
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        special = {"bos_token": self._piece(self._llm.token_bos()), "eos_token": self._piece(self._llm.token_eos())}
        text = env.from_string(template).render(messages=messages, add_generation_prompt=True, **special)
        if self._hf is not None:  # added (special) tokens are matched as such, as transformers does
            return list(self._hf.encode(text, add_special_tokens=False).ids)
        return [int(t) for t in self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)]

    def _piece(self, token: int) -> str:
        return "" if token < 0 else self._decode([token], True)

    # --- the sequence ----------------------------------------------------------------------------
    def _logits(self) -> np.ndarray:
        ptr = self._lib.llama_get_logits_ith(self._llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).astype(np.float32, copy=True)

    def prefill(self, ids: list[int]) -> StepOutput:
        if not ids:
            raise ValueError("prefill needs at least one token id")
        self._llm.reset()
        self._forget_from(0)
        self._held = True
        return self.append(ids)

    def append(self, ids: list[int]) -> StepOutput:
        if not ids:
            raise ValueError("append needs at least one token id")
        if not self._held:
            raise RuntimeError("append before prefill: call prefill(prompt_ids) first")
        self.check_fits(self.length + len(ids))
        bad = [t for t in ids if not 0 <= t < self._n_vocab]
        if bad:
            raise ValueError(f"token ids {bad[:5]} outside the vocabulary [0, {self._n_vocab})")
        self._llm.eval(list(ids))
        return StepOutput(logits=self._logits(), hidden=None)

    def truncate(self, length: int) -> None:
        if not 0 < length <= self.length:
            raise ValueError(f"truncate length must be in [1, {self.length}], got {length}")
        if length < self.length:
            self._forget_from(length)
            self._llm.n_tokens = length

    def _forget_from(self, position: int) -> None:
        lib = self._lib
        lib.llama_memory_seq_rm(lib.llama_get_memory(self._llm.ctx), -1, position, -1)

    def close(self) -> None:
        """Free the model and its context now (else at garbage collection)."""
        self._llm.close()

    def teacher_forced(self, ids: list[int]) -> TeacherForced:
        raise HiddenStatesUnavailableError(
            "teacher_forced feeds the mlp router's training, which needs hidden states; llama.cpp does not "
            "expose them: train with the transformers runner"
        )
