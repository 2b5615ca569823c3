"""Shared test helpers: random inputs and a comparison that says where and how much it mismatched."""

from __future__ import annotations

import torch

TOL = {torch.float32: 1e-4, torch.float64: 1e-9, torch.bfloat16: 2e-2, torch.float16: 2e-3}


def qkv(lq: int, lk: int, hq: int, hkv: int, d: int, *, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(lq, hq, d, generator=g).to(dtype)
    k = torch.randn(lk, hkv, d, generator=g).to(dtype)
    v = torch.randn(lk, hkv, d, generator=g).to(dtype)
    return q, k, v


def assert_close(got: torch.Tensor, want: torch.Tensor, tol: float, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    diff = (got.double() - want.double()).abs()
    if diff.numel() == 0:
        return
    worst = float(diff.max())
    if not worst <= tol:
        where = tuple(int(i) for i in torch.nonzero(diff == diff.max())[0])
        raise AssertionError(
            f"{what}: max abs diff {worst:.3g} > {tol:g} at index {where} "
            f"(got {float(got[where]):.6g}, want {float(want[where]):.6g}); "
            f"{int((diff > tol).sum())} of {diff.numel()} entries off"
        )


def assert_mask_equal(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    bad = torch.nonzero(got != want)
    assert bad.numel() == 0, f"{what}: {len(bad)} blocks differ, first at {tuple(bad[0].tolist())}"


def causal_block_mask(hq: int, nqb: int, nkb: int, first_qb: int = 0) -> torch.Tensor:
    diag = torch.arange(first_qb, first_qb + nqb)
    return (torch.arange(nkb)[None, :] <= diag[:, None]).expand(hq, nqb, nkb).clone()


def save_word_tokenizer(out, words: list[str]) -> dict[str, int]:
    """A whitespace word-level HF tokenizer over ``words`` (id 0 ``[UNK]``) saved in ``out``; returns its vocab.
    For tiny random models whose prompts are those words (needs ``tokenizers`` and ``transformers``)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(out)
    return vocab
