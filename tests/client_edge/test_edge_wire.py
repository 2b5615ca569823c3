"""The edge's incremental prefix hashes equal the protocol's from-scratch hashes at every length."""

from __future__ import annotations

import pytest

from client_edge.protocol import text_prefix_hash, token_prefix_hash
from client_edge.wire import TextWire, TokenWire, make_wire


def test_token_hashes_grow_incrementally_and_match() -> None:
    wire, units = TokenWire(), []
    for i in range(300):
        units.append((i * 7919) % 50000)
        if i % 3 == 0:
            assert wire.prefix_hash(units) == token_prefix_hash(units)
    assert wire._hashed == 298  # never re-hashed from the start: the hasher only moved forward
    # the base of the next request (the length last adopted) comes from the cache; older lengths from scratch
    assert wire.prefix_hash(units, 298) == token_prefix_hash(units[:298])
    assert wire.prefix_hash(units, 5) == token_prefix_hash(units[:5])
    assert wire.prefix_hash(units, 0) == token_prefix_hash([])


def test_text_hashes_match_on_multibyte_text() -> None:
    wire, text = TextWire(), ""
    for piece in ["héllo ", "wörld ", "中文", "🙂", " done"]:
        text += piece
        assert wire.prefix_hash(text) == text_prefix_hash(text)
        assert wire.prefix_hash(text, len(text) - 1) == text_prefix_hash(text[:-1])


def test_fields_per_mode() -> None:
    from client_edge.protocol import SamplingSettings

    assert make_wire("token").delta([1, 2]) == {"new_token_ids": [1, 2]}
    assert make_wire("text").delta("ab") == {"new_text": "ab"}
    assert make_wire("token").draft([4], SamplingSettings(temperature=1.0)) == {
        "draft_token_ids": [4], "draft_distributions": [{4: 1.0}]}  # fmt: skip
    with pytest.raises(ValueError):
        make_wire("token").prefix_hash([1], 2)
