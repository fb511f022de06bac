"""Hostile packed values for tests: zstd frames and segment bodies whose claims lie about their bytes.

A zstd frame is built by hand (RFC 8878: magic, a frame header with a single segment and an
8-byte content size, then RLE blocks of 4 bytes each), so a frame that inflates to a GiB
costs the test 32 KiB, never the GiB.
"""

from __future__ import annotations

import struct

import msgpack
import numpy as np

from tradetape.domain.columns import TradeColumns
from tradetape.history.bulk import BATCH_FORMAT
from tradetape.store.segments import SEGMENT_FORMAT

ZSTD_MAGIC = 0xFD2FB528
RLE_BLOCK_MAX = 128 * 1024


def rle_frame(content: int, declared: int | None) -> bytes:
    """A zstd frame that inflates to `content` zero bytes; its header declares `declared` (None: no size)."""
    if declared is None:
        header = struct.pack("<IBB", ZSTD_MAGIC, 0x00, 0x58)  # no content size; window 2^(10+11) = 2 MiB
    else:
        header = struct.pack("<IBQ", ZSTD_MAGIC, 0xE0, declared)  # 8-byte content size, single segment
    blocks = bytearray()
    left = content
    while True:
        size = min(left, RLE_BLOCK_MAX)
        left -= size
        last = 1 if left == 0 else 0
        blocks += (last | (1 << 1) | (size << 3)).to_bytes(3, "little") + b"\x00"
        if last:
            return header + bytes(blocks)


def segment_body(n: int, widths: list[int], frame: bytes, maker: bytes | None = None, **fields: object) -> bytes:
    """A segment value claiming `n` trades (other header fields plausible unless given)."""
    body: dict[str, object] = {
        "v": SEGMENT_FORMAT,
        "n": n,
        "a0": 1,
        "f0": 1,
        "t0": 1_767_225_600_000,
        "p0": 10**10,
        "pt": 1,
        "qs": 1,
        "w": widths,
        "z": frame,
        "m": maker if maker is not None else bytes((n + 7) // 8),
    }
    body.update(fields)
    return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]


def batch_body(segment: bytes, source: str = "hostile") -> bytes:
    return msgpack.packb({"v": BATCH_FORMAT, "source": source, "trades": segment}, use_bin_type=True)  # type: ignore[no-any-return]


def hostile_batches() -> dict[str, bytes]:
    """The bulk-import bodies persist must refuse cheaply, by what each lies about."""
    zeros_10m = rle_frame(6 * 10_000_000, 6 * 10_000_000)
    return {
        "10M trades": batch_body(segment_body(10_000_000, [1] * 6, zeros_10m, maker=b"\x00" * 1000)),
        "2^40 trades": batch_body(segment_body(2**40, [1] * 6, rle_frame(6000, 6000), maker=b"\x00" * 1000)),
        "2^40 trades, no size": batch_body(segment_body(2**40, [1] * 6, rle_frame(6000, None), maker=b"")),
        "widths 8 on 1-byte planes": batch_body(segment_body(1000, [8] * 6, rle_frame(6000, 6000))),
        "width 3": batch_body(segment_body(1000, [3] * 6, rle_frame(18_000, 18_000))),
        "a thousand widths": batch_body(segment_body(1000, [8] * 1000, rle_frame(8_000_000, 8_000_000))),
        "frame of a GiB": batch_body(segment_body(1000, [1] * 6, rle_frame(2**30, 2**30))),
        "frame of a GiB, no size": batch_body(segment_body(1000, [1] * 6, rle_frame(2**30, None))),
        "frame claiming 2^40": batch_body(segment_body(1000, [1] * 6, rle_frame(6000, 2**40))),
        "start beyond int64": batch_body(segment_body(1000, [1] * 6, rle_frame(6000, 6000), a0=2**64 - 1)),
        "quantities of 0": batch_body(segment_body(1000, [1] * 6, rle_frame(6000, 6000))),
    }


def legal_trades(n: int, first_id: int, start_ms: int) -> TradeColumns:
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    price = 10**10 + (ids % 7) * 10**6
    qty = np.full(n, 10**5, dtype=np.int64)
    return TradeColumns(ids, price, qty, ids, ids, start_ms + ids - first_id, ids % 2 == 0)
