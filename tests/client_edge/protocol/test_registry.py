"""The lazy package attributes of client_edge and attention_backend (``LazyRegistry.module_attribute``)."""

from __future__ import annotations

import pytest

import attention_backend
import client_edge


def test_lazy_names_load_the_registered_objects() -> None:
    from attention_backend.prefill import xattention_prefill
    from client_edge.client import EdgeClient

    assert client_edge.EdgeClient is EdgeClient
    assert attention_backend.xattention_prefill is xattention_prefill
    assert set(client_edge.__all__) <= set(dir(client_edge))


@pytest.mark.parametrize("package", [client_edge, attention_backend])
def test_unknown_name_is_an_attribute_error_listing_the_public_names(package) -> None:
    with pytest.raises(AttributeError, match=f"module '{package.__name__}' has no attribute 'nope'") as info:
        package.nope  # noqa: B018
    for name in package.__all__:
        assert repr(name) in str(info.value)
    assert not hasattr(package, "nope")
