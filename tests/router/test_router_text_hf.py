"""Text-bridged content with the real SmolLM2 tokenizer (byte-level BPE): random appends and truncates
keep the invariants the prefix cache relies on. Skips when the packaged model was not converted."""

from __future__ import annotations

import random

import pytest

from router.sessions.content import TextContent

PIECES = ["The", " quick", " brown", " fox", ",", " jumps", "\n\n", "  ", "over", " 13", "7", " lazy", " dogs",
          ".", " café", " naïve", " 中文", "字符", " 🙂", "!", "'s", " don", "'t", " e", "=", "mc", "²", "\t", " "]


@pytest.fixture(scope="module")
def tok():
    from server.models.store import DEFAULT_MODEL_NAME, cache_root

    model_dir = cache_root() / "models" / DEFAULT_MODEL_NAME
    if not (model_dir / "tokenizer.json").exists():
        pytest.skip(f"packaged model not converted yet at {model_dir} (run scripts/setup.sh or xedge serve once)")
    from router.tokenizer import HFTokenizer

    return HFTokenizer.load(model_dir)


@pytest.mark.parametrize("seed", range(4))
def test_random_appends_and_truncates_keep_invariants(tok, seed):
    rng = random.Random(seed)
    content = TextContent.start(tok, holdback=2)
    worst_tail = 0
    for _ in range(60):
        if rng.random() < 0.15 and content.length:
            cut = rng.randrange(content.length + 1)
            content = content.truncate(cut, tok)
            assert content.text == content.text[:cut]
        else:
            before = content.ids
            content = content.append("".join(rng.choice(PIECES) for _ in range(rng.randrange(1, 4))), tok)
            assert content.ids[: len(before)] == before  # frozen cloud tokens never change
        # What the engine gets decodes to exactly the committed text.
        assert tok.decode(content.prompt_ids(tok)[content.n_start :]) == content.text
        assert tok.decode(content.ids[content.n_start :]) == content.text[: content.frozen_chars]
        # Only a short tail is re-tokenised per engine call; everything before it is frozen (cacheable).
        tail = len(content.prompt_ids(tok)) - content.cloud_tokens
        worst_tail = max(worst_tail, tail)
    assert worst_tail <= 6, worst_tail
