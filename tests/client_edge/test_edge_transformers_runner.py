"""TransformersRunner on a tiny random Llama (built in a temp dir: no hub): the KV cache, truncate and
layer dropping agree with one full forward pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from client_edge.runner.transformers_runner import TransformersRunner, TransformersRunnerConfig  # noqa: E402

CHARS = "abcdefghijklmnopqrstuvwxyz .,?!0123456789"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    d = tmp_path_factory.mktemp("tiny_llama")
    vocab = {"<s>": 0, "</s>": 1, "<unk>": 2, **{c: i + 3 for i, c in enumerate(CHARS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(d)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=0,
        eos_token_id=1,
    )
    LlamaForCausalLM(cfg).save_pretrained(d)
    return d


def _ids(r: TransformersRunner, text: str) -> list[int]:
    return r.encode(text)


def test_cached_steps_match_one_full_pass(tiny_dir: Path) -> None:
    r = TransformersRunner(TransformersRunnerConfig(tiny_dir))
    ids = _ids(r, "hello world, this is odd length?")
    assert len(ids) == 32 and r.decode(ids) == "hello world, this is odd length?"
    full = r.teacher_forced(ids)
    assert full.logits.shape == (len(ids), r.vocab_size) and full.hidden.shape == (len(ids), r.hidden_size)
    step = r.prefill(ids[:5])
    for i in range(5, len(ids)):
        np.testing.assert_allclose(step.logits, full.logits[i - 1], atol=1e-4)
        np.testing.assert_allclose(step.hidden, full.hidden[i - 1], atol=1e-4)
        step = r.append([ids[i]])
    assert r.length == len(ids)


def test_truncate_then_append_equals_fresh(tiny_dir: Path) -> None:
    r = TransformersRunner(TransformersRunnerConfig(tiny_dir))
    ids = _ids(r, "abcdefghijklmnopq")
    full = r.teacher_forced(ids)
    r.prefill(_ids(r, "abcdefg") + _ids(r, "zzzz"))  # four wrong draft tokens
    r.truncate(7)
    assert r.length == 7
    step = r.append(ids[7:12])
    np.testing.assert_allclose(step.logits, full.logits[11], atol=1e-4)
    with pytest.raises(ValueError):
        r.truncate(100)


def test_keep_layers_and_fingerprint(tiny_dir: Path) -> None:
    full = TransformersRunner(TransformersRunnerConfig(tiny_dir))
    small = TransformersRunner(TransformersRunnerConfig(tiny_dir, keep_layers=(0, 2)))
    assert len(small.model.model.layers) == 2
    ids = _ids(full, "abc def")
    a, b = full.prefill(ids), small.prefill(ids)
    assert not np.allclose(a.logits, b.logits)
    step = small.append(ids[:3])  # the cache works with re-indexed layers
    np.testing.assert_allclose(step.logits, small.teacher_forced(ids + ids[:3]).logits[-1], atol=1e-4)
    assert full.tokenizer_fingerprint == small.tokenizer_fingerprint
    assert full.tokenizer_fingerprint.startswith(f"v1:{len(full.tokenizer)}:")
    assert full.eos_token_ids == frozenset({1})
    with pytest.raises(ValueError, match="out of range"):
        TransformersRunner(TransformersRunnerConfig(tiny_dir, keep_layers=(0, 7)))


def test_bad_inputs(tiny_dir: Path) -> None:
    with pytest.raises(FileNotFoundError):
        TransformersRunnerConfig(tiny_dir / "absent")
    r = TransformersRunner(TransformersRunnerConfig(tiny_dir))
    with pytest.raises(RuntimeError, match="prefill"):
        r.append([3])
    r.prefill([3, 4])
    with pytest.raises(ValueError):
        r.append([])


def test_prompt_cache_restores_the_prefill_exactly(tiny_dir: Path) -> None:
    """A cached prompt's prefill is a copy: appending / truncating after one hit leaves the cached entry
    intact for the next, and every step equals the uncached runner's."""
    plain = TransformersRunner(TransformersRunnerConfig(tiny_dir))
    cached = TransformersRunner(TransformersRunnerConfig(tiny_dir, prompt_cache=2))
    prompt, more = _ids(plain, "the prompt, twice"), _ids(plain, " and more")
    ref0 = plain.prefill(prompt)
    ref1 = plain.append(more)
    for round_ in range(3):
        s0 = cached.prefill(prompt)
        assert cached.length == len(prompt) and cached.prompt_cache_hits == round_
        np.testing.assert_array_equal(s0.logits, ref0.logits)
        np.testing.assert_array_equal(s0.hidden, ref0.hidden)
        s1 = cached.append(more)
        np.testing.assert_allclose(s1.logits, ref1.logits, atol=1e-6)
        cached.truncate(len(prompt) + 2)
        s0.logits[:] = 0.0  # a caller writing into a step must not reach the cache
    other = _ids(plain, "other")
    cached.prefill(other)
    cached.prefill(_ids(plain, "third"))  # evicts the least recently used: the first prompt
    hits = cached.prompt_cache_hits
    cached.prefill(prompt)
    assert cached.prompt_cache_hits == hits


def test_prompt_cache_must_not_be_negative(tiny_dir: Path) -> None:
    with pytest.raises(ValueError, match="prompt_cache"):
        TransformersRunnerConfig(tiny_dir, prompt_cache=-1)
