"""ModelRunner on Hugging Face transformers, CPU, with a DynamicCache (torch imported here only)."""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from client_edge.protocol import FINGERPRINT_PROBE_TEXT, fingerprint_probe_ids
from client_edge.protocol import tokenizer_fingerprint as protocol_fingerprint
from client_edge.runner.base import ModelRunner, StepOutput, TeacherForced


@dataclass(frozen=True)
class TransformersRunnerConfig:
    """``model_dir``: an HF directory (config, weights, tokenizer). ``keep_layers``: indices of decoder
    layers to keep (None = all); dropping layers makes the degraded same-tokenizer edge model.
    ``num_threads``: torch intra-op threads (None = torch's default). ``prompt_cache``: how many prefilled
    prompts to keep (KV cache and step output, least recently used dropped first), so a ``prefill`` of a
    prompt seen before copies its KV cache instead of recomputing it (an evaluation answers the same
    prompts under many configurations); 0 = off."""

    model_dir: Path
    keep_layers: tuple[int, ...] | None = None
    num_threads: int | None = None
    prompt_cache: int = 0

    def __post_init__(self) -> None:
        if not Path(self.model_dir).is_dir():
            raise FileNotFoundError(f"model_dir {self.model_dir} is not a directory")
        if self.prompt_cache < 0:
            raise ValueError(f"prompt_cache must be >= 0, got {self.prompt_cache}")
        if self.keep_layers is not None and len(self.keep_layers) == 0:
            raise ValueError("keep_layers must name at least one layer (or be None for all)")


def tokenizer_fingerprint(tokenizer: object) -> str:
    """The protocol's fingerprint of an HF tokenizer (equal = the same ids for any text)."""
    vocab_size = len(tokenizer)  # type: ignore[arg-type]
    probe = tokenizer.encode(FINGERPRINT_PROBE_TEXT, add_special_tokens=False)  # type: ignore[attr-defined]
    decoded = tokenizer.decode(fingerprint_probe_ids(vocab_size))  # type: ignore[attr-defined]
    return protocol_fingerprint(vocab_size, probe, decoded)


class TransformersRunner(ModelRunner):
    """Greedy-friendly runner: one sequence, KV cache cropped on ``truncate``."""

    def __init__(self, config: TransformersRunnerConfig) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if config.num_threads is not None:
            torch.set_num_threads(config.num_threads)
        self._torch = torch
        self.config = config
        self.model_name = Path(config.model_dir).name
        self.tokenizer = AutoTokenizer.from_pretrained(str(config.model_dir))
        model = AutoModelForCausalLM.from_pretrained(str(config.model_dir), dtype=torch.float32)
        if config.keep_layers is not None:
            _keep_layers(model, config.keep_layers)
        self.model = model.eval()
        self._fingerprint = tokenizer_fingerprint(self.tokenizer)
        eos = self.model.generation_config.eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos]
        if self.tokenizer.eos_token_id is not None:
            eos_ids.append(self.tokenizer.eos_token_id)
        self._eos = frozenset(int(e) for e in eos_ids if e is not None)
        self._cache: object | None = None
        self._length = 0
        self._prompts: OrderedDict[tuple[int, ...], tuple[object, StepOutput]] = OrderedDict()
        self.prompt_cache_hits = 0

    @property
    def length(self) -> int:
        return self._length

    @property
    def vocab_size(self) -> int:
        return int(self.model.config.vocab_size)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def eos_token_ids(self) -> frozenset[int]:
        return self._eos

    @property
    def tokenizer_fingerprint(self) -> str:
        return self._fingerprint

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=add_special_tokens))

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    @property
    def context_length(self) -> int | None:
        n = getattr(self.model.config, "max_position_embeddings", None)
        return int(n) if n else None

    def apply_chat(self, messages: list[dict[str, str]]) -> list[int]:
        if getattr(self.tokenizer, "chat_template", None):
            ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            if not isinstance(ids, list):  # transformers 5 returns a BatchEncoding
                ids = ids["input_ids"]
            return [int(i) for i in ids]
        return super().apply_chat(messages)

    def prefill(self, ids: list[int]) -> StepOutput:
        from transformers import DynamicCache

        key = tuple(ids)
        hit = self._prompts.get(key) if self.config.prompt_cache else None
        if hit is not None:
            self._prompts.move_to_end(key)
            self.prompt_cache_hits += 1
            # a copy: append / truncate change the held cache in place
            self._cache, self._length = copy.deepcopy(hit[0]), len(ids)
            return StepOutput(logits=hit[1].logits.copy(), hidden=hit[1].hidden.copy())
        self._cache = DynamicCache()
        self._length = 0
        step = self.append(ids)
        if self.config.prompt_cache:
            kept = StepOutput(logits=step.logits.copy(), hidden=step.hidden.copy())
            self._prompts[key] = (copy.deepcopy(self._cache), kept)
            if len(self._prompts) > self.config.prompt_cache:
                self._prompts.popitem(last=False)
        return step

    def append(self, ids: list[int]) -> StepOutput:
        if not ids:
            raise ValueError("append needs at least one token id")
        if self._cache is None:
            raise RuntimeError("append before prefill: call prefill(prompt_ids) first")
        self.check_fits(self._length + len(ids))
        torch = self._torch
        input_ids = torch.tensor([ids], dtype=torch.long)
        with torch.inference_mode():
            out = self.model(
                input_ids=input_ids,
                past_key_values=self._cache,
                use_cache=True,
                output_hidden_states=True,
            )
        self._cache = out.past_key_values
        self._length += len(ids)
        return StepOutput(
            logits=out.logits[0, -1].float().numpy().copy(),
            hidden=out.hidden_states[-1][0, -1].float().numpy().copy(),
        )

    def truncate(self, length: int) -> None:
        if not 0 < length <= self._length:
            raise ValueError(f"truncate length must be in [1, {self._length}], got {length}")
        if length < self._length:
            self._cache.crop(length - self._length)  # type: ignore[union-attr]  # negative: drop that many
            self._length = length

    def teacher_forced(self, ids: list[int]) -> TeacherForced:
        torch = self._torch
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([ids], dtype=torch.long), output_hidden_states=True)
        self._cache, self._length = None, 0
        return TeacherForced(
            logits=out.logits[0].float().numpy(),
            hidden=out.hidden_states[-1][0].float().numpy(),
        )


def _keep_layers(model: object, keep: tuple[int, ...]) -> None:
    import torch

    layers = model.model.layers  # type: ignore[attr-defined]
    bad = [i for i in keep if not 0 <= i < len(layers)]
    if bad:
        raise ValueError(f"keep_layers {bad} out of range: the model has {len(layers)} layers")
    kept = torch.nn.ModuleList([layers[i] for i in keep])
    for new_idx, layer in enumerate(kept):
        layer.self_attn.layer_idx = new_idx  # the KV cache is indexed by position in the list
    model.model.layers = kept  # type: ignore[attr-defined]
    model.config.num_hidden_layers = len(kept)  # type: ignore[attr-defined]
    if getattr(model.config, "layer_types", None) is not None:  # type: ignore[attr-defined]
        model.config.layer_types = [model.config.layer_types[i] for i in keep]  # type: ignore[attr-defined]
