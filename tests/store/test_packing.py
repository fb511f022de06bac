import contextlib
import tracemalloc
from collections.abc import Callable

import msgpack
import numpy as np
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from tests.store.hostile import rle_frame
from tradetape.store.layer import recompressed_minute_levels
from tradetape.store.packing import (
    PackingError,
    byte_width,
    pack_columns,
    recompressed,
    unpack_columns,
    unzigzag,
    zigzag,
)
from tradetape.store.sealed import seal
from tradetape.store.segments import SegmentFormatError

int64s = st.integers(-(2**63), 2**63 - 1)


@given(st.lists(int64s, max_size=50))
def test_zigzag_round_trips_every_int64(values: list[int]) -> None:
    column = np.array(values, dtype=np.int64)
    assert np.array_equal(unzigzag(zigzag(column)), column)


def test_small_magnitudes_stay_small() -> None:
    assert zigzag(np.array([0, -1, 1, -2, 2], dtype=np.int64)).tolist() == [0, 1, 2, 3, 4]
    assert byte_width(zigzag(np.array([0, 127, -128], dtype=np.int64))) == 1
    assert byte_width(zigzag(np.array([128], dtype=np.int64))) == 2


@given(st.integers(1, 40).flatmap(lambda n: st.lists(st.lists(int64s, min_size=n, max_size=n), min_size=1, max_size=4)))
def test_columns_round_trip(columns: list[list[int]]) -> None:
    arrays = [np.array(c, dtype=np.int64) for c in columns]
    widths, frame = pack_columns(arrays)
    assert all(
        np.array_equal(a, b) for a, b in zip(unpack_columns(widths, len(columns[0]), frame), arrays, strict=True)
    )


def test_a_damaged_frame_is_a_specific_error() -> None:
    widths, frame = pack_columns([np.arange(10, dtype=np.int64)])
    with pytest.raises(PackingError):
        unpack_columns(widths, 10, frame[:-3])
    with pytest.raises(PackingError):
        unpack_columns(widths, 11, frame)


def peak_bytes_of(call: Callable[[], object]) -> int:
    """The most memory Python's allocators held at once during `call` (zstd and numpy buffers included)."""
    tracemalloc.start()
    try:
        with contextlib.suppress(PackingError):
            call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("frame", "widths", "count"),
    [
        (rle_frame(6000, 2**40), [1], 6000),  # declares 2^40 bytes: allocated before a byte is read
        (rle_frame(2**30, 2**30), [1], 6000),  # a real GiB of zeros in 32 KiB
        (rle_frame(2**30, None), [1], 6000),  # the same without a declared size
        (rle_frame(6000, 6000), [3], 2000),  # a width no column has
        (rle_frame(6000, 6000), [8], 6000),  # widths that claim more than the frame holds
    ],
    ids=["declares 2^40", "a GiB", "a GiB undeclared", "width 3", "widths lie"],
)
def test_a_frame_is_refused_by_its_claims_before_it_is_inflated(frame: bytes, widths: list[int], count: int) -> None:
    for read in (unpack_columns, recompressed):
        with pytest.raises(PackingError):
            read(widths, count, frame)
        assert peak_bytes_of(lambda read=read: read(widths, count, frame)) < 1_000_000


@given(st.integers(1, 40).flatmap(lambda n: st.lists(st.lists(int64s, min_size=n, max_size=n), min_size=1, max_size=4)))
def test_a_fast_frame_recompressed_is_the_frame_packed_at_rest(columns: list[list[int]]) -> None:
    arrays = [np.array(c, dtype=np.int64) for c in columns]
    widths, fast = pack_columns(arrays, fast=True)
    assert recompressed(widths, len(columns[0]), fast) == pack_columns(arrays)[1]


def planes_reference(widths: list[int], count: int, raw: bytes) -> list[list[int]]:
    """Each column read value by value from its byte planes, zigzag undone with Python ints."""
    columns, offset = [], 0
    for width in widths:
        column = []
        for i in range(count):
            unsigned = sum(raw[offset + plane * count + i] << (8 * plane) for plane in range(width))
            column.append((unsigned >> 1) ^ -(unsigned & 1))
        columns.append(column)
        offset += width * count
    return columns


magnitudes = st.sampled_from([1, 2**7, 2**15, 2**31, 2**63])
"""Bounds that make each byte width occur, so columns of every width sit side by side as in a layer value."""


@given(st.integers(0, 30).flatmap(lambda n: st.lists(
    magnitudes.flatmap(lambda m: st.lists(st.integers(-m, m - 1), min_size=n, max_size=n)), min_size=1, max_size=20)))
def test_columns_of_mixed_widths_decode_as_read_value_by_value(columns: list[list[int]]) -> None:
    widths, frame = pack_columns([np.array(c, dtype=np.int64) for c in columns])
    count = len(columns[0])
    raw = zstandard.ZstdDecompressor().decompress(frame)
    decoded = unpack_columns(widths, count, frame)
    assert [column.tolist() for column in decoded] == planes_reference(widths, count, raw) == columns
    assert all(column.dtype == np.int64 and column.flags.owndata for column in decoded)  # what a cache counts it holds


@pytest.mark.parametrize("rpi_widths", [[8] * 64, [8, "8"], 8], ids=["64 columns", "a width as text", "no list"])
def test_a_minute_levels_value_is_recompressed_only_as_far_as_its_checks_allow(rpi_widths: object) -> None:
    """The hour's join recompresses the RPI share's frame too: its widths are checked as its decoding checks them
    (a crafted value claiming 64 columns of 2^20 rows made the join allocate 0.5 GiB, or fail past the checks)."""
    n = 2**20
    body = {"v": 1, "n": n, "s": 0, "p0": 0, "pt": 1, "qs": 1, "w": [1] * 5, "z": rle_frame(5 * n, 5 * n)}
    value = seal(msgpack.packb(body | {"rs": 1, "rw": rpi_widths, "rz": rle_frame(64 * 8 * n, 64 * 8 * n)}))
    with pytest.raises(SegmentFormatError):
        recompressed_minute_levels(value)

    def refused() -> None:
        with contextlib.suppress(SegmentFormatError):
            recompressed_minute_levels(value)

    assert peak_bytes_of(refused) < 64 * n  # the levels' own frame, 5 MiB, is recompressed first
