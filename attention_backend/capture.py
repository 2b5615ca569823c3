"""Capture post-RoPE queries and keys of the attention layers of a local HF model (transformers).

Used by the calibration command and the quality / density benchmarks; transformers is imported lazily
(it is in the ``edge`` extra). The model directory is a local HF directory (``server.models.store`` makes
one from the packaged GGUF); nothing is downloaded. On CPU the model runs in fp32; on CUDA pass
``dtype=torch.bfloat16`` (the Triton kernels take bf16, and a 32K prompt's fp32 activations are large).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

_ATTN_NAME = "xedge_capture_qk"


@dataclass(frozen=True)
class CapturedLayer:
    """One layer of one prompt: q [L, Hq, D], k and v [L, Hkv, D] (post-RoPE, in the capture dtype, on
    the capture device), the model's softmax scale and the layer's index in the model."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    scale: float
    layer: int = 0


def full_attention_layers(config: Any) -> list[int]:
    """Indices of the layers with full (global) causal attention: all of them, except the layers that
    ``config.layer_types`` marks as sliding-window (Gemma-3: five sliding layers per global one)."""
    n = int(config.num_hidden_layers)
    types = getattr(config, "layer_types", None)
    if not types:
        return list(range(n))
    return [i for i, t in enumerate(types) if t == "full_attention"]


class QKCapture:
    """Loads the model once; ``capture(text, max_tokens)`` returns one :class:`CapturedLayer` per kept
    layer (``layers``: indices to keep, default all; the others still run, uncaptured)."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        layers: Collection[int] | None = None,
    ) -> None:
        from transformers import (
            AttentionInterface,
            AttentionMaskInterface,
            AutoModelForCausalLM,
            AutoTokenizer,
        )
        from transformers.integrations.sdpa_attention import sdpa_attention_forward
        from transformers.masking_utils import sdpa_mask

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise ValueError(f"model_dir: expected a local HF model directory with config.json, got {str(model_dir)!r}")
        self._layers: list[CapturedLayer] = []
        self._calls = 0

        def capture_then_sdpa(module, query, key, value, attention_mask, **kwargs):  # type: ignore[no-untyped-def]
            index = int(getattr(module, "layer_idx", self._calls))
            self._calls += 1
            if self.keep is None or index in self.keep:
                scale = kwargs.get("scaling") or query.shape[-1] ** -0.5
                self._layers.append(
                    CapturedLayer(
                        q=query[0].transpose(0, 1).contiguous(),
                        k=key[0].transpose(0, 1).contiguous(),
                        v=value[0].transpose(0, 1).contiguous(),
                        scale=float(scale),
                        layer=index,
                    )
                )
            return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

        AttentionInterface.register(_ATTN_NAME, capture_then_sdpa)
        # SDPA's masks too: transformers builds NO mask for an attention name without a mask function, and
        # then every layer runs plain causal, so Gemma-3's sliding-window layers would attend globally.
        AttentionMaskInterface.register(_ATTN_NAME, sdpa_mask)
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation=_ATTN_NAME)
        self.model.to(self.device).eval()
        self.config = self.model.config
        self.num_layers = int(self.config.num_hidden_layers)
        self.max_positions = int(getattr(self.config, "max_position_embeddings", 0) or 0)
        self.keep = None if layers is None else frozenset(int(i) for i in layers)
        if self.keep is not None and not self.keep <= set(range(self.num_layers)):
            raise ValueError(f"layers: expected indices in [0, {self.num_layers}), got {sorted(self.keep)}")

    def capture(self, text: str, max_tokens: int) -> list[CapturedLayer]:
        """Run the prompt (truncated to ``max_tokens`` tokens) once; return its captured layers."""
        if self.max_positions and max_tokens > self.max_positions:
            raise ValueError(f"max_tokens: expected <= the model's {self.max_positions} positions, got {max_tokens}")
        ids = self.tokenizer(text, return_tensors="pt").input_ids[0, :max_tokens]
        return self.capture_ids(ids.tolist())

    def capture_ids(self, ids: list[int]) -> list[CapturedLayer]:
        """Run these token ids once; return the captured layers."""
        if self.max_positions and len(ids) > self.max_positions:
            raise ValueError(f"ids: expected <= the model's {self.max_positions} positions, got {len(ids)}")
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        self._layers, self._calls = [], 0
        with torch.no_grad():
            # logits of the last token only: all of them would be [L, vocab] (32K x 262K fp32 = 34 GB for Gemma-3)
            self.model(input_ids=input_ids, use_cache=False, logits_to_keep=1)
        layers, self._layers = self._layers, []
        expected = self.num_layers if self.keep is None else len(self.keep)
        if self._calls != self.num_layers or len(layers) != expected:
            raise RuntimeError(
                f"capture: expected {self.num_layers} attention calls ({expected} kept), "
                f"got {self._calls} ({len(layers)} kept)"
            )
        return layers
