from __future__ import annotations

import pytest

from client_edge.protocol.engine_xargs import (
    DEFAULT_META,
    InvalidRequestMeta,
    RequestMeta,
    parse_request_meta,
)


def test_flat_vllm_xargs_keys() -> None:
    meta = parse_request_meta(
        {
            "xedge_category": "chat",
            "xedge_tenant": "acme",
            "xedge_pin_ttl_s": 600,
            "xedge_pin_tokens": 512,
            "other": 1,
        }
    )
    assert meta == RequestMeta(category="chat", tenant="acme", pin_ttl_s=600.0, pin_tokens=512)


def test_nested_dict_and_defaults() -> None:
    assert parse_request_meta({"xedge": {"category": "api"}}) == RequestMeta(category="api")
    assert parse_request_meta(None) is DEFAULT_META
    assert parse_request_meta({"kv_transfer_params": {}}) is DEFAULT_META


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"xedge_pin_ttl_s": -1}, "pin_ttl_s must be positive"),
        ({"xedge_pin_ttl_s": "600"}, "pin_ttl_s must be a positive number"),
        ({"xedge_pin_tokens": 1.5}, "pin_tokens must be a positive integer"),
        ({"xedge_category": ""}, "category must be a non-empty string"),
        ({"xedge": {"categroy": "x"}}, "unknown xedge fields"),
        ({"xedge": "chat"}, "'xedge' must be an object"),
    ],
)
def test_bad_metadata_is_a_typed_error(extra: dict, message: str) -> None:
    with pytest.raises(InvalidRequestMeta, match=message):
        parse_request_meta(extra)


def test_pin_until_covers_only_the_pinned_prefix() -> None:
    meta = RequestMeta(pin_ttl_s=10.0, pin_tokens=64)
    assert meta.pin_until(0, 32, now=5.0) == 15.0
    assert meta.pin_until(1, 32, now=5.0) == 15.0
    assert meta.pin_until(2, 32, now=5.0) is None
    assert RequestMeta().pin_until(0, 32, now=5.0) is None
