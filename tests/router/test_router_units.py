"""Units: consistent hashing, settings parsing, protocol hashes and fingerprint."""

from __future__ import annotations

import pytest

from client_edge.protocol import (
    FINGERPRINT_PROBE_TEXT,
    TokenPrefixHasher,
    fingerprint_probe_ids,
    text_prefix_hash,
    token_prefix_hash,
    tokenizer_fingerprint,
)
from router.replicas import HashRing
from router.settings import RouterSettings


def test_hash_ring_spreads_and_moves_few_keys():
    urls = [f"http://r{i}:8000" for i in range(4)]
    ring = HashRing(urls)
    keys = [f"s_{i}" for i in range(4000)]
    owners = [ring.pick(k) for k in keys]
    counts = [owners.count(i) for i in range(4)]
    assert min(counts) > 600, counts  # each replica gets a fair share (ideal 1000)
    assert owners == [HashRing(urls).pick(k) for k in keys]  # stable across processes
    grown = HashRing([*urls, "http://r4:8000"])
    moved = sum(1 for k, o in zip(keys, owners, strict=True) if grown.pick(k) != o)
    assert moved < 0.35 * len(keys)  # ideal 1/5 move; a modulo hash would move ~4/5
    assert all(grown.pick(k) == 4 for k, o in zip(keys, owners, strict=True) if grown.pick(k) != o)
    with pytest.raises(ValueError, match="unique"):
        HashRing(["a", "a"])


def test_settings_from_env(monkeypatch):
    monkeypatch.setenv("XEDGE_ROUTER_VLLM_URLS", "http://a:1, http://b:2")
    monkeypatch.setenv("XEDGE_ROUTER_MAX_K", "4")
    s = RouterSettings()
    assert s.vllm_urls == ["http://a:1", "http://b:2"] and s.max_k == 4
    monkeypatch.setenv("XEDGE_ROUTER_VLLM_URLS", '["http://c:3"]')
    assert RouterSettings().vllm_urls == ["http://c:3"]
    monkeypatch.setenv("XEDGE_ROUTER_MAX_K", "0")
    with pytest.raises(ValueError, match="max_k"):
        RouterSettings()


def test_prefix_hashes():
    ids = list(range(1000, 1100))
    h = TokenPrefixHasher().update(ids[:40])
    assert h.copy().update(ids[40:]).hexdigest() == token_prefix_hash(ids)
    assert h.hexdigest() == token_prefix_hash(ids[:40])
    assert token_prefix_hash([1, 2]) != token_prefix_hash([2, 1]) != token_prefix_hash([1, 2, 0])
    assert text_prefix_hash("ab") != text_prefix_hash("a")


def test_fingerprint_depends_on_every_input():
    probe = fingerprint_probe_ids(49152)
    assert probe[0] == 0 and probe[-1] == 49151 and len(probe) == 65
    base = tokenizer_fingerprint(100, [1, 2, 3], "abc")
    assert base.startswith("v1:100:")
    assert len({base, tokenizer_fingerprint(101, [1, 2, 3], "abc"), tokenizer_fingerprint(100, [1, 2, 4], "abc"),
                tokenizer_fingerprint(100, [1, 2, 3], "abd")}) == 4
    assert "\n" in FINGERPRINT_PROBE_TEXT


def test_settings_from_cli_flags():
    s = RouterSettings(_cli_parse_args=["--vllm-urls", "http://a:1,http://b:2", "--port", "9001"], _cli_kebab_case=True)
    assert s.vllm_urls == ["http://a:1", "http://b:2"] and s.port == 9001
