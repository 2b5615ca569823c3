"""Request traces for the simulator: the Mooncake and the Alibaba Bailian JSONL formats.

Both become a ``Trace``: per request its arrival time (s), prompt length, output length, request
metadata, and its prompt blocks as integer keys that identify the whole prefix up to and including the
block (equal key = equal prefix). Mooncake's ``hash_ids`` already chain over the prefix (512-token
blocks); Bailian's do not (16-token blocks), so keys are interned prefix paths in both cases.

Mooncake lines: ``timestamp`` (ms), ``input_length``, ``output_length``, ``hash_ids``. The trace carries
no request class, so the category is what a chat server knows at arrival, the turn of the
conversation: ``turn1``, ``turn2``, ``turn3``, ``turn4+``, where a conversation is identified by its
first two prefix blocks (block 0 is the system prompt every request shares).
Bailian lines: ``chat_id``, ``parent_chat_id``, ``timestamp`` (s), ``input_length``, ``output_length``,
``type``, ``turn``, ``hash_ids``; the category is ``<type>-turn<N>`` (N capped at ``4+``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from client_edge.protocol.engine_xargs import RequestMeta

TraceFormat = Literal["mooncake", "bailian"]
BLOCK_TOKENS: dict[str, int] = {"mooncake": 512, "bailian": 16}
_MOONCAKE_FIELDS = ("timestamp", "input_length", "output_length", "hash_ids")
_BAILIAN_FIELDS = (*_MOONCAKE_FIELDS, "chat_id", "parent_chat_id", "type", "turn")


class TraceFormatError(ValueError):
    """A malformed trace; the message names the file and line."""


@dataclass(frozen=True)
class Trace:
    format: TraceFormat
    block_tokens: int
    times_s: list[float]
    input_tokens: list[int]
    output_tokens: list[int]
    blocks: list[list[int]]
    metas: list[RequestMeta]

    def __len__(self) -> int:
        return len(self.times_s)

    @property
    def num_blocks(self) -> int:
        return sum(len(b) for b in self.blocks)


def detect_format(first: dict[str, Any]) -> TraceFormat:
    return "bailian" if "chat_id" in first else "mooncake"


def read_trace(path: Path, fmt: TraceFormat | None = None, limit: int | None = None) -> Trace:
    """Parse a JSONL trace; ``fmt`` None detects it from the first line. Stops at the first bad line."""
    times: list[float] = []
    inputs: list[int] = []
    outputs: list[int] = []
    blocks: list[list[int]] = []
    metas: list[RequestMeta] = []
    paths: dict[tuple[int, Hashable], int] = {}
    turns: dict[int, int] = {}
    meta_cache: dict[str, RequestMeta] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if limit is not None and len(times) >= limit:
                break
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TraceFormatError(f"{where}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise TraceFormatError(f"{where}: expected a JSON object")
            if fmt is None:
                fmt = detect_format(row)
            block_tokens = BLOCK_TOKENS[fmt]
            _check_row(row, fmt, block_tokens, where)
            keys = prefix_keys(row["hash_ids"], paths)
            time_s = row["timestamp"] / 1000.0 if fmt == "mooncake" else float(row["timestamp"])
            if times and time_s < times[-1]:
                raise TraceFormatError(f"{where}: timestamp goes back in time ({time_s} < {times[-1]})")
            if fmt == "mooncake":
                turn = 1
                if len(keys) > 1:
                    turn = turns[keys[1]] = turns.get(keys[1], 0) + 1
                category = turn_category(turn)
            else:
                category = f"{row['type']}-{turn_category(row['turn'])}"
            meta = meta_cache.get(category)
            if meta is None:
                meta = meta_cache[category] = RequestMeta(category=category)
            times.append(time_s)
            inputs.append(row["input_length"])
            outputs.append(row["output_length"])
            blocks.append(keys)
            metas.append(meta)
    if fmt is None or not times:
        raise TraceFormatError(f"{path}: no requests")
    return Trace(fmt, BLOCK_TOKENS[fmt], times, inputs, outputs, blocks, metas)


def turn_category(turn: int) -> str:
    """The category of a conversation's ``turn``-th request: ``turn1`` .. ``turn3``, then ``turn4+``."""
    return f"turn{max(turn, 1)}" if turn < 4 else "turn4+"


def prefix_keys(contents: Iterable[Hashable], paths: dict[tuple[int, Hashable], int]) -> list[int]:
    """The keys of one prompt's blocks, each identifying the whole prefix up to it: ``paths`` interns
    (parent key, block content) pairs across the trace, so equal keys are equal prefixes."""
    keys, parent = [], -1
    for content in contents:
        parent = paths.setdefault((parent, content), len(paths))
        keys.append(parent)
    return keys


def _check_row(row: dict[str, Any], fmt: TraceFormat, block_tokens: int, where: str) -> None:
    fields = _MOONCAKE_FIELDS if fmt == "mooncake" else _BAILIAN_FIELDS
    missing = [k for k in fields if k not in row]
    if missing:
        raise TraceFormatError(f"{where}: missing fields {missing} for the {fmt} format")
    for k in ("input_length", "output_length"):
        if not _is_int(row[k]) or row[k] < 0:
            raise TraceFormatError(f"{where}: {k} must be a non-negative integer, got {row[k]!r}")
    if (
        not isinstance(row["timestamp"], int | float)
        or isinstance(row["timestamp"], bool)
        or not 0 <= row["timestamp"] < math.inf  # NaN and Infinity (Python's json reads both) too
    ):
        raise TraceFormatError(f"{where}: timestamp must be a finite non-negative number, got {row['timestamp']!r}")
    hashes = row["hash_ids"]
    if not isinstance(hashes, list) or not all(_is_int(h) for h in hashes):
        raise TraceFormatError(f"{where}: hash_ids must be a list of integers")
    expected = -(-row["input_length"] // block_tokens)
    # Mooncake: exactly one id per started block (checked on the real trace). Bailian: at most that many.
    if len(hashes) > expected or (fmt == "mooncake" and len(hashes) != expected):
        raise TraceFormatError(
            f"{where}: {len(hashes)} hash_ids for input_length {row['input_length']}, "
            f"expected {expected} ({block_tokens}-token blocks)"
        )
    if fmt == "bailian" and (not _is_int(row["turn"]) or row["turn"] < 0 or not isinstance(row["type"], str)):
        raise TraceFormatError(f"{where}: turn must be a non-negative integer and type a string")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
