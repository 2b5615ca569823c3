"""XAttention block-sparse prefill for xedge (see docs/DEVELOPING.md)."""
