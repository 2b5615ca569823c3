"""Shipped per-head XAttention threshold tables (JSON, one per packaged model), read by
``attention_backend.shipped_tables``; a package so that wheels carry the JSON files (package-data)."""
