"""Every stored value is checksummed: flipped bytes anywhere are `StoreCorruptError` naming the key, never data.

Real trades go through the real writer into a real RocksDB; values are then damaged with
rocksdict directly. Older stores (values unsealed) are migrated when the writer opens them.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import msgpack
import numpy as np
import pytest
from rocksdict import Rdict

from tests.store.synthetic import SYMBOL, T0, same, tape, windows_of, write_rolled
from tradetape.domain.columns import TradeColumns
from tradetape.store.keys import (
    HISTOGRAM,
    LAYOUT_KEY,
    MINUTE_LEVELS,
    SECOND_BARS,
    SEGMENT,
    SUMMARY,
    VOID,
    WINDOW_SUMMARY,
    index_key,
    rolled_key,
    timed_key,
)
from tradetape.store.layout import StoreLayoutError, read_layout
from tradetape.store.lookup import time_of_id
from tradetape.store.reads import (
    read_all_trades,
    read_coverage,
    read_minute_levels,
    read_price_levels,
    read_second_bars,
    read_trades,
)
from tradetape.store.rocks import StoreError, open_primary, scan
from tradetape.store.sealed import ChecksumError, StoreCorruptError, is_sealed, seal, unseal
from tradetape.store.segments import (
    FORMAT_VERSION,
    SegmentFormatError,
    SegmentSummary,
    decode_stored_segment,
    encode_segment,
)
from tradetape.store.writer import ShardWriter

HOUR = 3_600_000
NOW_MS = T0 + 3 * HOUR


def flipped(value: bytes, at: int, count: int = 1) -> bytes:
    damaged = bytearray(value)
    for i in range(at, min(at + count, len(value))):
        damaged[i] ^= 0xFF
    return bytes(damaged)


def places(value: bytes) -> list[int]:
    return [0, len(value) // 2, len(value) - 1]


@pytest.fixture(scope="module")
def written_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TradeColumns]:
    """Three hours rolled up into segments (a void in the second), then young windows."""
    path = tmp_path_factory.mktemp("sealed") / "shard"
    trades = tape(6_000, 3 * HOUR)
    void = np.zeros(len(trades), dtype=np.bool_)
    void[2_500] = True
    zero = np.where(void, 0, 1).astype(np.int64)
    trades = TradeColumns(
        trades.agg_id, trades.price * zero, trades.qty * zero, np.where(void, -1, trades.first_id),
        np.where(void, -1, trades.last_id), trades.time, trades.buyer_maker,
    )
    store = ShardWriter(path)
    try:
        write_rolled(store, trades.take(trades.time < NOW_MS - 60_000))
        store.write(windows_of(SYMBOL, trades.take(trades.time >= NOW_MS - 60_000)))
    finally:
        store.close()
    return path, trades


@pytest.fixture
def written(written_once: tuple[Path, TradeColumns], tmp_path: Path) -> tuple[Path, TradeColumns]:
    """`written_once`'s store copied for this test, which damages or migrates it (a closed RocksDB dir is files)."""
    path, trades = written_once
    return Path(shutil.copytree(path, tmp_path / "shard")), trades


def damage(path: Path, key: bytes, change: Callable[[bytes], bytes]) -> None:
    """The value under `key` changed in place, with rocksdict directly."""
    db = open_primary(path)
    try:
        value = db.get(key)
        assert value is not None, key
        db.put(key, change(value))
    finally:
        db.close()


READS: dict[str, Callable[[Rdict], object]] = {
    "trades of the hour": lambda db: read_trades(db, SYMBOL, T0 + HOUR + 60_000, T0 + 2 * HOUR - 60_000),
    "coverage of the hour": lambda db: read_coverage(db, SYMBOL, (T0 + HOUR + 60_000, T0 + 2 * HOUR - 60_000)),
    "levels of the whole hour": lambda db: read_price_levels(db, SYMBOL, (T0 + HOUR, T0 + 2 * HOUR)),
    "every trade": lambda db: read_all_trades(db, SYMBOL),
    "the whole tape's coverage": lambda db: read_coverage(db, SYMBOL, None),
    "second bars of the hour": lambda db: read_second_bars(db, SYMBOL, (T0 + HOUR + 500, T0 + 2 * HOUR - 500)),
    "minute levels of the hour": lambda db: read_minute_levels(db, SYMBOL, (T0 + HOUR + 500, T0 + 2 * HOUR - 500)),
}
"""Reads that touch the second hour's values (and the young windows, the index)."""

VALUES: dict[str, tuple[bytes, tuple[str, ...]]] = {
    "segment": (
        timed_key(SEGMENT, SYMBOL, T0 + HOUR),
        ("trades of the hour", "coverage of the hour", "every trade", "second bars of the hour",
         "minute levels of the hour"),
    ),  # fmt: skip
    "summary": (timed_key(SUMMARY, SYMBOL, T0 + HOUR), tuple(READS)[:4]),
    "histogram": (timed_key(HISTOGRAM, SYMBOL, T0 + HOUR), ("levels of the whole hour",)),
    "voids": (timed_key(VOID, SYMBOL, T0 + HOUR), ("coverage of the hour", "the whole tape's coverage")),
    "index": (index_key(SYMBOL), ("coverage of the hour", "the whole tape's coverage")),
    "second bars": (timed_key(SECOND_BARS, SYMBOL, T0 + HOUR), ("second bars of the hour",)),
    "minute levels": (timed_key(MINUTE_LEVELS, SYMBOL, T0 + HOUR), ("minute levels of the hour",)),
}


@pytest.mark.slow
@pytest.mark.parametrize("where", ["start", "middle", "end"])
@pytest.mark.parametrize("kind", list(VALUES))
def test_a_flipped_byte_anywhere_in_a_value_is_store_corrupt_for_every_read_of_it(
    written: tuple[Path, TradeColumns], kind: str, where: str
) -> None:
    path, _ = written
    key, reads = VALUES[kind]

    def flip(value: bytes) -> bytes:
        return flipped(value, places(value)[["start", "middle", "end"].index(where)])

    damage(path, key, flip)
    db = open_primary(path)
    try:
        for name in reads:
            with pytest.raises(StoreCorruptError) as caught:
                READS[name](db)
            assert caught.value.key == key, name
    finally:
        db.close()


def test_a_flipped_young_window_and_a_flipped_mark_are_named_too(written: tuple[Path, TradeColumns]) -> None:
    path, trades = written
    young = trades.take(trades.time >= NOW_MS - 60_000)
    window = timed_key("trades", SYMBOL, int(young.time[len(young) // 2]) // 1000 * 1000)
    damage(path, window, lambda value: flipped(value, len(value) // 2, 3))
    damage(path, rolled_key(SYMBOL), lambda value: flipped(value, len(value) - 1))
    db = open_primary(path)
    try:
        for read in (lambda: read_trades(db, SYMBOL, NOW_MS - 60_000, NOW_MS), lambda: read_all_trades(db, SYMBOL)):
            with pytest.raises(StoreCorruptError) as caught:
                read()
            assert caught.value.key == window
        with pytest.raises(StoreCorruptError):
            time_of_id(db, SYMBOL, int(young.agg_id[-1]))
    finally:
        db.close()
    store = ShardWriter(path)  # the writer meets the flipped mark when it next rolls up
    try:
        with pytest.raises(StoreCorruptError) as caught:
            store.roll_up(SYMBOL, NOW_MS)
        assert caught.value.key == rolled_key(SYMBOL)
    finally:
        store.close()


def test_every_single_bit_flip_of_a_summary_and_a_segment_is_caught() -> None:
    columns = tape(2_000, HOUR)
    summary = SegmentSummary.of(T0, columns).encode()
    for position in range(len(summary)):
        for bit in range(8):
            damaged = bytearray(summary)
            damaged[position] ^= 1 << bit
            with pytest.raises(SegmentFormatError):
                SegmentSummary.decode(bytes(damaged))
    segment = seal(encode_segment(columns))
    rng = np.random.default_rng(5)
    for position in rng.integers(0, len(segment), 400):
        damaged = bytearray(segment)
        damaged[position] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises((ChecksumError, SegmentFormatError)):
            decode_stored_segment(bytes(damaged))


def test_zstd_checks_the_inflated_columns_too() -> None:
    """Past the seal (re-sealed after the damage), zstd's content checksum still refuses changed columns."""
    body = msgpack.unpackb(encode_segment(tape(2_000, HOUR)), raw=False)
    frame = bytearray(body["z"])
    frame[-1] ^= 0x01  # the frame's checksum
    body["z"] = bytes(frame)
    with pytest.raises(SegmentFormatError, match="checksum"):
        decode_stored_segment(seal(msgpack.packb(body, use_bin_type=True)))


def _as_format_2(path: Path) -> int:
    """The store as format 2 wrote it: every value unsealed, no window summaries, the layout as plain msgpack; how many
    values."""
    db = open_primary(path)
    try:
        items = scan(db, b"", b"\xff")
        for key, value in items:
            if key.startswith(f"{WINDOW_SUMMARY}:".encode()):
                db.delete(key)
            else:
                db.put(key, unseal(value))
        db.put(LAYOUT_KEY, msgpack.packb({"v": 2, "segment_ms": HOUR}))
    finally:
        db.close()
    return len(items)


def test_a_format_2_store_is_refused_by_readers_and_sealed_when_the_writer_opens_it(
    written: tuple[Path, TradeColumns], caplog: pytest.LogCaptureFixture
) -> None:
    path, trades = written
    _as_format_2(path)
    bad = timed_key(SUMMARY, SYMBOL, T0 + 2 * HOUR)
    damage(path, bad, lambda value: value[:-3])  # unreadable before the migration already
    db = open_primary(path)
    try:
        assert read_layout(db) == (2, HOUR)
        with pytest.raises(StoreLayoutError, match="format 2"):
            read_coverage(db, SYMBOL, None)
    finally:
        db.close()

    caplog.set_level(logging.INFO, logger="tradetape.store.migration")
    ShardWriter(path).close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "store migration started: sealing every value",
        "stored value unreadable, left unsealed",
        "store migrated",
        "store upgraded: window summaries written",
    ]
    db = open_primary(path)
    try:
        assert read_layout(db) == (FORMAT_VERSION, HOUR)
        assert all(is_sealed(value) for key, value in scan(db, b"", b"\xff") if key != bad)
        kept = trades.take(~trades.voids())
        assert same(read_trades(db, SYMBOL, T0, T0 + 2 * HOUR), kept.between(T0, T0 + 2 * HOUR))
        assert read_coverage(db, SYMBOL, (T0, T0 + 2 * HOUR)).void_count == 1
        with pytest.raises(StoreCorruptError) as caught:
            read_all_trades(db, SYMBOL)
        assert caught.value.key == bad
    finally:
        db.close()


def test_a_migration_cut_short_resumes(written: tuple[Path, TradeColumns]) -> None:
    path, trades = written
    count = _as_format_2(path)
    db = open_primary(path)
    try:  # as if the first batches were written before a kill: some values sealed, the layout still format 2
        for key, value in scan(db, b"", b"\xff")[: count // 2]:
            if key != LAYOUT_KEY:
                db.put(key, seal(value))
    finally:
        db.close()
    ShardWriter(path).close()
    db = open_primary(path)
    try:
        assert read_layout(db) == (FORMAT_VERSION, HOUR)
        assert same(read_all_trades(db, SYMBOL), trades.take(~trades.voids()))
        assert all(is_sealed(value) for _, value in scan(db, b"", b"\xff"))
    finally:
        db.close()


def test_the_writer_refuses_to_merge_into_a_corrupt_segment_and_writes_nothing(
    written: tuple[Path, TradeColumns],
) -> None:
    """A `StoreError`, so persist holds the batch and retries as for a refused write (nothing accepted is lost)."""
    path, trades = written
    key = timed_key(SEGMENT, SYMBOL, T0 + HOUR)
    damage(path, key, lambda value: flipped(value, len(value) // 2))
    late = trades.take(np.arange(len(trades)) == 3_000)
    late = TradeColumns(late.agg_id + 1_000_000, *late.arrays()[1:])  # type: ignore[arg-type]
    store = ShardWriter(path)
    try:
        before = store.index(SYMBOL)
        with pytest.raises(StoreError) as caught:
            store.write(windows_of(SYMBOL, late))
        assert isinstance(caught.value, StoreCorruptError) and caught.value.key == key
        assert store.index(SYMBOL).count == before.count
    finally:
        store.close()
