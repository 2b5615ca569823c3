"""Bytes for what a session store keeps: session metadata, committed content and recorded replies.

Both stores keep replies as compact JSON bytes (not pydantic objects); the Redis store also keeps the
session itself this way. Token ids are packed as little-endian uint32 (4 bytes each instead of a
Python int object or a JSON number).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence

from pydantic import BaseModel

from client_edge.protocol import (
    EscalateResponse,
    SamplingSettings,
    SessionResponse,
    TokenPrefixHasher,
    VerifyResponse,
)
from router.sessions.content import Content, TextContent, TokenContent

#: Every reply type an operation records, by the name written next to its JSON.
REPLY_TYPES: dict[str, type[BaseModel]] = {t.__name__: t for t in (SessionResponse, EscalateResponse, VerifyResponse)}


def pack_ids(ids: Sequence[int]) -> bytes:
    return struct.pack(f"<{len(ids)}I", *ids)


def unpack_ids(raw: bytes) -> tuple[int, ...]:
    return struct.unpack(f"<{len(raw) // 4}I", raw)


def encode_reply(digest: str, reply: BaseModel) -> bytes:
    """``digest`` NUL ``type name`` NUL ``JSON``: one recorded reply to a request id."""
    name = type(reply).__name__
    if name not in REPLY_TYPES:
        raise TypeError(f"cannot record a {name}: not one of {sorted(REPLY_TYPES)}")
    return b"\0".join((digest.encode(), name.encode(), reply.model_dump_json().encode()))


def decode_reply(blob: bytes) -> tuple[str, BaseModel]:
    digest, name, body = blob.split(b"\0", 2)
    return digest.decode(), REPLY_TYPES[name.decode()].model_validate_json(body)


def encode_content(content: Content) -> dict[str, bytes]:
    """The content as flat binary fields (a Redis hash's)."""
    if isinstance(content, TokenContent):
        return {"kind": b"token", "ids": pack_ids(content.ids)}
    assert isinstance(content, TextContent)
    return {
        "kind": b"text",
        "ids": pack_ids(content.ids),
        "ends": pack_ids(content.ends),
        "text": content.text.encode("utf-8", "surrogatepass"),
        "holdback": str(content.holdback).encode(),
        "n_start": str(content.n_start).encode(),
    }


CONTENT_FIELDS = ("kind", "ids", "ends", "text", "holdback", "n_start")


def decode_content(fields: dict[str, bytes | None]) -> Content:
    ids = unpack_ids(fields["ids"] or b"")
    if fields["kind"] == b"token":
        return TokenContent(ids, TokenPrefixHasher().update(ids))
    return TextContent(
        text=(fields["text"] or b"").decode("utf-8", "surrogatepass"),
        ids=ids,
        ends=unpack_ids(fields["ends"] or b""),
        holdback=int(fields["holdback"] or b"0"),
        n_start=int(fields["n_start"] or b"0"),
    )


def encode_meta(mode: str, sampling: SamplingSettings, replica: int, max_model_len: int) -> bytes:
    return json.dumps(
        {"mode": mode, "sampling": sampling.model_dump(mode="json"), "replica": replica, "max_model_len": max_model_len}
    ).encode()


def decode_meta(raw: bytes) -> dict[str, object]:
    meta = json.loads(raw)
    meta["sampling"] = SamplingSettings.model_validate(meta["sampling"])
    return meta
