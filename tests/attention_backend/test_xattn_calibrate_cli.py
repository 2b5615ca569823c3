"""`xedge calibrate-xattn` on a tiny random Llama (built here, offline): table shape, validity, and the
calibration contract (each head keeps the target share of its true attention on the sample)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from attention_backend import XAttentionConfig, estimate_block_scores, select_blocks
from attention_backend.calibrate import token_recall, true_block_mass
from tests.attention_backend.xattn_helpers import save_word_tokenizer

WORDS = [f"w{i}" for i in range(200)]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    transformers = pytest.importorskip("transformers")

    out = tmp_path_factory.mktemp("tiny-llama")
    vocab = save_word_tokenizer(out, WORDS)
    cfg = transformers.LlamaConfig(
        vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(cfg).save_pretrained(out)
    return out


def _app():
    import typer

    from server.commands import calibrate_xattn

    app = typer.Typer()
    calibrate_xattn.register(app)
    app.command("noop")(lambda: None)  # keep calibrate-xattn a named sub-command
    return app


def test_bad_input_exits_2_with_a_message(tmp_path):
    runner = CliRunner()
    res = runner.invoke(_app(), ["calibrate-xattn", "--out", str(tmp_path / "t.json"), "--target", "1.5"])
    assert res.exit_code == 2 and "--target: expected a share in (0, 1]" in res.output
    res = runner.invoke(_app(), ["calibrate-xattn", "--out", str(tmp_path / "t.json"), "--model", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_calibrate_tiny_model_meets_target(tiny_model, tmp_path):
    rng = random.Random(0)
    text = tmp_path / "sample.txt"
    text.write_text(" ".join(rng.choice(WORDS) for _ in range(700)))
    out = tmp_path / "table.json"
    res = CliRunner().invoke(
        _app(),
        ["calibrate-xattn", "--model", str(tiny_model), "--out", str(out), "--text-file", str(text),
         "--tokens", "512", "--block-size", "64", "--stride", "8", "--target", "0.9"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    table = data["threshold"]
    assert len(table) == 2 and all(len(row) == 4 for row in table)
    assert data["model_key"].startswith("llama/L2/H4/")  # as the shipped tables are matched
    cfg = XAttentionConfig.from_dict({"threshold_table": str(out), "block_size": 64})
    from attention_backend.capture import QKCapture

    layers = QKCapture(tiny_model).capture(text.read_text(), 512)
    for i, lay in enumerate(layers):
        scores = estimate_block_scores(lay.q, lay.k, block_size=64, stride=8, scale=lay.scale)
        mask = select_blocks(scores, cfg.thresholds(4, layer=i))
        mass = true_block_mass(lay.q, lay.k, block_size=64, scale=lay.scale)
        recall = token_recall(mass, mask, block_size=64, q_offset=0).mean(-1)
        assert bool((recall >= 0.9).all()), (i, recall.tolist())
