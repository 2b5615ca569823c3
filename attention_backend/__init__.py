"""XAttention block-sparse prefill for xedge.

Public API (tensor shapes in each docstring): :class:`XAttentionConfig`, :func:`estimate_block_scores`,
:func:`select_blocks`, :func:`block_sparse_attention`, :func:`xattention_prefill`. The torch-based
functions are imported lazily so that ``attention_backend.config`` stays importable without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from attention_backend.config import XAttentionConfig
from client_edge.protocol.registry import LazyRegistry

if TYPE_CHECKING:
    from attention_backend.estimate import estimate_block_scores
    from attention_backend.prefill import xattention_prefill
    from attention_backend.select import select_blocks
    from attention_backend.sparse_attention import block_sparse_attention

_LAZY = LazyRegistry("attribute of attention_backend", {
    "estimate_block_scores": "attention_backend.estimate:estimate_block_scores",
    "select_blocks": "attention_backend.select:select_blocks",
    "block_sparse_attention": "attention_backend.sparse_attention:block_sparse_attention",
    "xattention_prefill": "attention_backend.prefill:xattention_prefill",
})

__all__ = [
    "XAttentionConfig",
    "block_sparse_attention",
    "estimate_block_scores",
    "select_blocks",
    "xattention_prefill",
]


def __getattr__(name: str) -> Any:
    return _LAZY.module_attribute(__name__, name, __all__)
