"""The meta values: the database's layout (format version, segment span) and each symbol's marks.

A mark is a time in epoch ms (`meta:rolled:{SYMBOL}`: every window before it is in a segment;
`meta:retained:{SYMBOL}`: the latest retention cutoff). Both are sealed like every stored
value (`tradetape.store.sealed`). The layout is the one value also read as older formats
wrote it (msgpack, unsealed), so that the writer knows a database to migrate; a layout of
format 3 or later unsealed is corrupt.
"""

from __future__ import annotations

import msgpack

from tradetape.store.sealed import is_sealed, seal, unseal
from tradetape.store.segments import FORMAT_VERSION, SEALED_SINCE, SegmentFormatError


def encode_layout(segment_ms: int) -> bytes:
    return seal(msgpack.packb({"v": FORMAT_VERSION, "segment_ms": segment_ms}))


def decode_layout(value: bytes) -> tuple[int, int]:
    """The format version and segment span a layout value records; `SegmentFormatError` if it is not one."""
    try:
        body = msgpack.unpackb(unseal(value) if is_sealed(value) else value)
        version, span = int(body["v"]), int(body["segment_ms"])
    except (KeyError, TypeError, ValueError, AttributeError, msgpack.ExtraData) as exc:
        raise SegmentFormatError(f"unreadable layout: {exc}") from exc
    if (version >= SEALED_SINCE) != is_sealed(value) or span <= 0:
        raise SegmentFormatError(f"layout of format {version}, span {span}, {'' if is_sealed(value) else 'un'}sealed")
    return version, span


def encode_mark(time_ms: int) -> bytes:
    return seal(str(time_ms).encode())


def decode_mark(value: bytes) -> int:
    """A mark's time; `SegmentFormatError` if it is not one."""
    try:
        return int(unseal(value))
    except ValueError as exc:
        raise SegmentFormatError(f"unreadable mark: {exc}") from exc
