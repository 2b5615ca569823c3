"""`xedge demo`'s edge model: the layer-dropped GGUF for llama.cpp holds exactly the kept blocks of the packaged
one, and it is the same model as the transformers runner's keep_layers copy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
pytest.importorskip("llama_cpp")

from server.demo.edge import EDGE_KEEP_LAYERS, RUNNERS, layer_dropped_gguf, make_edge_runner  # noqa: E402
from server.models.store import SMOLLM2, ensure_default_model  # noqa: E402


def test_layer_dropped_gguf_keeps_exactly_the_kept_blocks(tmp_path: Path) -> None:
    out = layer_dropped_gguf(SMOLLM2.path(), EDGE_KEEP_LAYERS, tmp_path / "edge.gguf")
    src, dst = gguf.GGUFReader(str(SMOLLM2.path())), gguf.GGUFReader(str(out))
    assert dst.fields["llama.block_count"].contents() == len(EDGE_KEEP_LAYERS) == 28
    by_name = {t.name: t for t in src.tensors}
    for t in dst.tensors:
        name = t.name
        if name.startswith("blk."):
            i = int(name.split(".")[1])
            name = f"blk.{EDGE_KEEP_LAYERS[i]}." + name.split(".", 2)[2]
        assert t.tensor_type == by_name[name].tensor_type and bytes(t.data) == bytes(by_name[name].data)
    per_block = sum(1 for t in src.tensors if t.name.startswith("blk.14."))
    assert per_block > 0 and len(dst.tensors) == len(src.tensors) - 2 * per_block
    assert dst.fields["tokenizer.chat_template"].contents() == src.fields["tokenizer.chat_template"].contents()


def test_both_demo_runners_run_the_same_degraded_model() -> None:
    (llama, _), (hf, _) = (make_edge_runner(name, ensure_default_model(), n_threads=2) for name in RUNNERS)
    prompt = hf.apply_chat_template("Name a colour of the rainbow.")
    a, b = llama.prefill(prompt).logits, hf.prefill(prompt).logits
    assert int(np.argmax(a)) == int(np.argmax(b)) and np.corrcoef(a, b)[0, 1] > 0.99
    assert llama.tokenizer_fingerprint == hf.tokenizer_fingerprint  # token mode against the cloud works
