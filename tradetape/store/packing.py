"""Integer columns packed small: zigzag, the narrowest byte width, byte planes, then zstd.

Pure numpy, no per-value Python. The transforms that make the numbers small (deltas,
tick scaling) belong to the caller (`tradetape.store.segments`); this module only turns
a column of small signed integers into few bytes and back. Byte planes (all low bytes,
then all next bytes, ...) let zstd see the long runs of zero high bytes that one outlier
per column would otherwise spread over every value.

Every frame carries zstd's content checksum (`write_checksum`), which the decompressor
checks: inflated bytes that differ from those compressed are an error, never columns
(the stored value around the frame has its own checksum too: `tradetape.store.sealed`).
Frames without one (written before it was added) still decode.

Thread safety: zstandard's compressor and decompressor objects are not safe to share
between threads (one shared by the analytics worker's query threads returned wrong bytes
and crashed the process), so each thread gets its own pair, made on first use. Measured:
a new decompressor per call costs ~15 µs more per frame than one kept per thread.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import zstandard

from tradetape.errors import FormatError

Int64Array = npt.NDArray[np.int64]

ZSTD_LEVEL = 9
"""Measured on real-like BTCUSDT segments: level 9 is ~8 % smaller than 3 and still encodes an hour in ~20 ms."""
FAST_ZSTD_LEVEL = 1
"""For a value written again within seconds (an open hour's minute levels, grown at every roll-up), compressed at
`ZSTD_LEVEL` once it stops changing (`recompressed`). Measured on real-like BTCUSDT minute levels of an hour at 2,000
trades/s: 58 ms to encode instead of 182, the same size; at 30 trades/s 4 % larger."""

_WIDTHS = (1, 2, 4, 8)
_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_SIGNED = {1: np.int8, 2: np.int16, 4: np.int32, 8: np.int64}


class _Codecs(threading.local):
    """This thread's zstd compressor and decompressor (never shared: see the module's docstring)."""

    def __init__(self) -> None:
        self.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
        self.fast_compressor = zstandard.ZstdCompressor(level=FAST_ZSTD_LEVEL, write_checksum=True)
        self.decompressor = zstandard.ZstdDecompressor()


_codecs = _Codecs()


class PackingError(FormatError):
    """Packed bytes that do not decode into the columns they claim to hold."""


def zigzag(values: Int64Array) -> npt.NDArray[np.uint64]:
    """Signed → unsigned with small magnitudes small: 0, -1, 1, -2 → 0, 1, 2, 3."""
    v = values.astype(np.int64, copy=False)
    return ((v << np.int64(1)) ^ (v >> np.int64(63))).view(np.uint64)


def unzigzag(values: npt.NDArray[np.unsignedinteger[Any]]) -> npt.NDArray[np.signedinteger[Any]]:
    """The inverse of `zigzag`, in the width of `values` (uint64 → int64, uint8 → int8, ...)."""
    one = values.dtype.type(1)
    signed: npt.NDArray[np.signedinteger[Any]] = (values >> one).view(_SIGNED[values.itemsize])
    signed ^= -(values & one).view(_SIGNED[values.itemsize])
    return signed


def byte_width(values: npt.NDArray[np.uint64]) -> int:
    """The narrowest of 1, 2, 4 or 8 bytes that holds every value."""
    top = int(values.max()) if len(values) else 0
    return next(w for w in _WIDTHS if top < 1 << (8 * w))


def to_planes(values: npt.NDArray[np.uint64], width: int) -> bytes:
    """`values` at `width` bytes each, little-endian, as byte planes."""
    narrow = values.astype(np.dtype(_UNSIGNED[width]).newbyteorder("<"), copy=False)
    return narrow.view(np.uint8).reshape(-1, width).T.tobytes()


def from_planes(planes: npt.NDArray[np.uint8]) -> npt.NDArray[np.unsignedinteger[Any]]:
    """Columns of one width as byte planes, shaped (columns, width, count), back to (columns, count) in that width."""
    width = planes.shape[1]
    unsigned = _UNSIGNED[width]
    values = planes[:, 0, :].astype(unsigned)
    for plane in range(1, width):  # whole-plane shifts: faster than transposing bytes back
        values |= planes[:, plane, :].astype(unsigned) << unsigned(8 * plane)
    return values


def pack_columns(columns: Sequence[Int64Array], *, fast: bool = False) -> tuple[list[int], bytes]:
    """Signed columns of equal length → their byte widths and one zstd frame of all their planes (`fast`: at
    `FAST_ZSTD_LEVEL`)."""
    widths: list[int] = []
    parts: list[bytes] = []
    for column in columns:
        unsigned = zigzag(column)
        width = byte_width(unsigned)
        widths.append(width)
        parts.append(to_planes(unsigned, width))
    compressor = _codecs.fast_compressor if fast else _codecs.compressor
    return widths, compressor.compress(b"".join(parts))


def packed_size(widths: Sequence[int], count: int) -> int:
    """The bytes `count` values of each of `widths` take; `PackingError` unless each width is 1, 2, 4 or 8 bytes."""
    if count < 0 or any(type(w) is not int or w not in _UNSIGNED for w in widths):
        raise PackingError(f"widths {list(widths)[:8]} x {count} values are not a packing")
    return sum(widths) * count


def recompressed(widths: Sequence[int], count: int, frame: bytes) -> bytes:
    """A frame of `pack_columns` (its header must declare the size `widths` and `count` make) compressed again at
    `ZSTD_LEVEL`: the same columns, without unpacking them."""
    size = packed_size(widths, count)
    _check_declared(frame, size)
    return compress(decompress(frame, size))


def unpack_columns(widths: Sequence[int], count: int, frame: bytes) -> list[Int64Array]:
    """The inverse of `pack_columns`; the widths and the frame's declared size are checked before it is inflated.

    The caller bounds `count` (and the number of widths): then nothing here allocates more than they allow.
    The columns of one width are decoded together, in that width: a segment's layer holds 18 columns of ~3,600
    values, where numpy's cost a call, not a value, was most of the time (measured on 25 second-bar values of a
    day: 10.7 ms column by column, 8.2 so, zstd 2.8 of each).
    """
    size = packed_size(widths, count)
    _check_declared(frame, size)
    try:
        raw = _codecs.decompressor.decompress(frame, max_output_size=size)
    except zstandard.ZstdError as exc:
        raise PackingError(f"unreadable zstd frame: {exc}") from exc
    if len(raw) != sum(widths) * count:
        raise PackingError(f"frame holds {len(raw)} bytes, widths {list(widths)} x {count} values expected")
    data = np.frombuffer(raw, dtype=np.uint8)
    offsets = [0, *itertools.accumulate(width * count for width in widths)]
    by_width: dict[int, list[int]] = {}
    for i, width in enumerate(widths):
        by_width.setdefault(width, []).append(i)
    columns: dict[int, Int64Array] = {}
    for width, at in by_width.items():
        planes = np.concatenate([data[offsets[i] : offsets[i + 1]] for i in at]).reshape(len(at), width, count)
        signed = unzigzag(from_planes(planes))
        columns |= {i: signed[row].astype(np.int64) for row, i in enumerate(at)}
    return [columns[i] for i in range(len(widths))]


def compress(data: bytes) -> bytes:
    return _codecs.compressor.compress(data)


def decompress(frame: bytes, size: int) -> bytes:
    """The bytes of one frame that declares at most `size` of them (zstd allocates what a frame declares)."""
    _check_declared(frame, size, exact=False)
    try:
        return _codecs.decompressor.decompress(frame, max_output_size=size)
    except zstandard.ZstdError as exc:
        raise PackingError(f"unreadable zstd frame: {exc}") from exc


def _check_declared(frame: bytes, size: int, *, exact: bool = True) -> None:
    """Refuse a frame whose header does not declare `size` bytes (at most `size` unless `exact`).

    python-zstandard allocates the size a frame header declares and ignores `max_output_size`
    then: a 20-byte frame may claim a terabyte. Our frames always declare theirs.
    """
    try:
        declared = zstandard.frame_content_size(frame)
    except zstandard.ZstdError as exc:
        raise PackingError(f"unreadable zstd frame: {exc}") from exc
    if declared < 0 or declared > size or (exact and declared != size):
        raise PackingError(f"zstd frame declares {declared} bytes, {size} expected")
