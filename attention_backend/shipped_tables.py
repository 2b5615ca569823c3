"""Per-head threshold tables shipped with xedge for the packaged models, found by model identity.

A table (``attention_backend/tables/<model>.json``, written by ``bench/xattn_density.py measure
--table-out``) holds ``threshold[layer][query head]`` (all query heads of the whole model, every layer;
layers the backend serves dense hold 1.0), the recall ``target`` it was calibrated for, the
``stride`` / ``block_size`` of the estimate it was calibrated with, and ``model_key``.

The key is the model's shape read from its HF config: model type, layers, query / KV heads, head dim,
hidden and MLP sizes, vocabulary. It does not depend on the directory name or path, and it survives
GGUF -> HF conversion and rope extension (rope settings and ``max_position_embeddings`` are left out on
purpose). It does not see the weights: a fine-tune with the same shape gets the same table.

No torch here: the launcher and the vLLM adapter both use it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attention_backend.config import ThresholdTable, _as_table

TABLES_DIR = Path(__file__).with_name("tables")
logger = logging.getLogger("attention_backend.tables")


def _field(config: Any, name: str) -> Any:
    return config.get(name) if isinstance(config, Mapping) else getattr(config, name, None)


def model_key(config: Any) -> str:
    """Identity of a model's shape, e.g. ``llama/L30/H9/KV3/D64/E576/I1536/V49152``.

    ``config``: an HF config object (vLLM's ``model_config.hf_text_config``, transformers'
    ``PretrainedConfig``) or its ``config.json`` as a mapping. Multimodal configs: pass the text config.
    """
    heads = _field(config, "num_attention_heads")
    hidden = _field(config, "hidden_size")
    missing = [n for n in ("model_type", "num_hidden_layers", "num_attention_heads", "hidden_size", "vocab_size") if _field(config, n) is None]
    if missing:
        raise ValueError(f"model_key: expected an HF (text) config with {missing}, got {type(config).__name__}")
    kv = _field(config, "num_key_value_heads") or heads
    head_dim = _field(config, "head_dim") or int(hidden) // int(heads)
    inter = _field(config, "intermediate_size") or 0
    return (
        f"{_field(config, 'model_type')}/L{int(_field(config, 'num_hidden_layers'))}/H{int(heads)}/KV{int(kv)}"
        f"/D{int(head_dim)}/E{int(hidden)}/I{int(inter)}/V{int(_field(config, 'vocab_size'))}"
    )


@dataclass(frozen=True)
class ShippedTable:
    """One shipped calibration file (what :func:`find_shipped_table` returns)."""

    path: Path
    model_key: str
    threshold: ThresholdTable
    target: float
    stride: int
    block_size: int


def load_shipped_table(path: Path) -> ShippedTable:
    """One shipped file, checked: its rows must be the layers and query heads its ``model_key`` names."""
    try:
        data = json.loads(path.read_text())
        table = ShippedTable(
            path=path,
            model_key=str(data["model_key"]),
            threshold=_as_table(data["threshold"]),
            target=float(data["target"]),
            stride=int(data["stride"]),
            block_size=int(data["block_size"]),
        )
        shape = re.match(r"[^/]+/L(\d+)/H(\d+)/", table.model_key)
        if shape is None:
            raise ValueError(f"model_key: expected type/L<layers>/H<heads>/..., got {table.model_key!r}")
        rows = sorted({len(row) for row in table.threshold})
        if len(table.threshold) != int(shape[1]) or rows != [int(shape[2])]:
            raise ValueError(
                f"threshold: expected {shape[1]} rows of {shape[2]} query heads (model_key {table.model_key}), "
                f"got {len(table.threshold)} rows of {rows}"
            )
        return table
    except (KeyError, TypeError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"shipped xattn table {path}: expected model_key, threshold, target, stride, block_size; {exc}") from None


def find_shipped_table(config: Any, tables_dir: Path = TABLES_DIR) -> ShippedTable | None:
    """The shipped table whose ``model_key`` is this config's, or None (no table for this model)."""
    key = model_key(config)
    for path in sorted(tables_dir.glob("*.json")):
        table = load_shipped_table(path)
        if table.model_key == key:
            return table
    return None


def with_shipped_table(
    section: Mapping[str, Any],
    config: Any | None,
    *,
    tables_dir: Path = TABLES_DIR,
    log: Callable[[str], None] = logger.info,
) -> dict[str, Any]:
    """Our ``additional_config["xattn"]`` section with the shipped table of this model as its threshold,
    where the user gave none (an explicit ``threshold`` / ``threshold_table`` always wins).

    The table also sets ``stride`` and ``block_size`` (what its taus were calibrated with) unless the
    user set them; when the user set a different one the table does not apply and the scalar default
    stays. Every outcome is logged through ``log`` (the vLLM adapter logs each line once per process).
    """
    section = dict(section)
    if "threshold" in section or "threshold_table" in section:
        log("xattn: threshold given explicitly; shipped tables not consulted")
        return section
    if section.get("enabled") is False:
        return section
    if config is None:
        log("xattn: no model config to match shipped tables against; scalar threshold default")
        return section
    try:
        key = model_key(config)
    except ValueError as exc:
        log(f"xattn: {exc}; no shipped table, scalar threshold default")
        return section
    table = find_shipped_table(config, tables_dir)
    if table is None:
        log(f"xattn: no shipped threshold table for model {key}; scalar threshold default")
        return section
    for name, value in (("stride", table.stride), ("block_size", table.block_size)):
        if name in section and section[name] != value:
            log(
                f"xattn: shipped table {table.path.name} was calibrated with {name}={value}, "
                f"{name}={section[name]} was set: table not used, scalar threshold default"
            )
            return section
    section.update(threshold=[list(row) for row in table.threshold], stride=table.stride, block_size=table.block_size)
    log(
        f"xattn: using shipped threshold table {table.path.name} (model {key}, recall target {table.target:g}, "
        f"S={table.stride}, B={table.block_size})"
    )
    return section
