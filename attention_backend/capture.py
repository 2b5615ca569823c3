"""Capture post-RoPE queries and keys of every attention layer of a local HF model (transformers, CPU).

Used by the calibration command and the quality benchmark; transformers is imported lazily (it is in
the ``edge`` extra). The model directory is a local HF directory (``server.models.store`` makes one from
the packaged GGUF); nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

_ATTN_NAME = "xedge_capture_qk"


@dataclass(frozen=True)
class CapturedLayer:
    """One layer of one prompt: q [L, Hq, D], k and v [L, Hkv, D] (float32, post-RoPE) and the model's
    softmax scale."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    scale: float


class QKCapture:
    """Loads the model once; ``capture(text, max_tokens)`` returns one :class:`CapturedLayer` per layer."""

    def __init__(self, model_dir: str | Path) -> None:
        from transformers import AttentionInterface, AutoModelForCausalLM, AutoTokenizer
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise ValueError(f"model_dir: expected a local HF model directory with config.json, got {str(model_dir)!r}")
        self._layers: list[CapturedLayer] = []

        def capture_then_sdpa(module, query, key, value, attention_mask, **kwargs):  # type: ignore[no-untyped-def]
            scale = kwargs.get("scaling") or query.shape[-1] ** -0.5
            self._layers.append(
                CapturedLayer(
                    q=query[0].transpose(0, 1).float().clone(),
                    k=key[0].transpose(0, 1).float().clone(),
                    v=value[0].transpose(0, 1).float().clone(),
                    scale=float(scale),
                )
            )
            return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

        AttentionInterface.register(_ATTN_NAME, capture_then_sdpa)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation=_ATTN_NAME)
        self.model.eval()
        self.num_layers = int(self.model.config.num_hidden_layers)
        self.max_positions = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)

    def capture(self, text: str, max_tokens: int) -> list[CapturedLayer]:
        """Run the prompt (truncated to ``max_tokens`` tokens) once; return its per-layer captures."""
        if self.max_positions and max_tokens > self.max_positions:
            raise ValueError(f"max_tokens: expected <= the model's {self.max_positions} positions, got {max_tokens}")
        ids = self.tokenizer(text, return_tensors="pt").input_ids[:, :max_tokens]
        self._layers = []
        with torch.no_grad():
            self.model(input_ids=ids, use_cache=False)
        layers, self._layers = self._layers, []
        if len(layers) != self.num_layers:
            raise RuntimeError(f"capture: expected {self.num_layers} attention calls, got {len(layers)}")
        return layers
