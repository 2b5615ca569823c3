"""QKCapture runs the model as the model's own SDPA forward does, sliding-window layers included (a tiny
random Gemma-3 built here, offline), and keeps only the layers asked for."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from attention_backend.capture import QKCapture, full_attention_layers
from tests.attention_backend.xattn_helpers import save_word_tokenizer

WORDS = [f"w{i}" for i in range(100)]


@pytest.fixture(scope="module")
def tiny_gemma3(tmp_path_factory) -> Path:
    transformers = pytest.importorskip("transformers")

    out = tmp_path_factory.mktemp("tiny-gemma3")
    vocab = save_word_tokenizer(out, WORDS)
    cfg = transformers.Gemma3TextConfig(
        vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, sliding_window=16, max_position_embeddings=512,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.Gemma3ForCausalLM(cfg).save_pretrained(out)
    return out


def test_capture_matches_the_sdpa_forward_with_sliding_windows(tiny_gemma3: Path) -> None:
    from transformers import AutoModelForCausalLM

    ids = torch.randint(1, len(WORDS) + 1, (1, 200))  # >> the 16-token window: a global sliding layer shows
    cap = QKCapture(tiny_gemma3, layers=full_attention_layers(QKCapture(tiny_gemma3).config))
    assert [lay.layer for lay in cap.capture_ids(ids[0].tolist())] == [2]
    with torch.no_grad():
        got = cap.model(input_ids=ids, use_cache=False).logits
        ref = AutoModelForCausalLM.from_pretrained(tiny_gemma3, dtype=torch.float32, attn_implementation="sdpa").eval()
        want = ref(input_ids=ids, use_cache=False).logits
    # without SDPA's mask function registered (before 92af2b6) the sliding layers ran global: off by 0.91
    assert torch.allclose(got, want, atol=1e-5), float((got - want).abs().max())
