"""The writer against a real RocksDB directory: exactly once by agg id, roll-up, late trades, retention."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.store.synthetic import SYMBOL, T0, coverage_figures, figures_of, same, tape, windows_of, write_rolled
from tradetape.domain.columns import TradeColumns
from tradetape.store.codec import decode_window, encode_window
from tradetape.store.keys import (
    MINUTE_LEVELS,
    SEGMENT,
    WINDOW,
    kind_prefix,
    prefix_end,
    tail_key,
    timed_key,
    window_key,
    window_values_end,
)
from tradetape.store.layer import decode_minute_levels, encode_minute_levels
from tradetape.store.layout import read_layout
from tradetape.store.reader import SecondaryStore
from tradetape.store.reads import read_all_trades, read_coverage
from tradetape.store.rocks import open_primary, scan
from tradetape.store.sealed import unseal
from tradetape.store.segment_join import SegmentJoin
from tradetape.store.segments import FORMAT_VERSION, segment_in_blocks
from tradetape.store.shards import ShardLockedError
from tradetape.store.window_writes import TAIL_WRITES
from tradetape.store.writer import ShardWriter

HOUR = 3_600_000


@pytest.fixture
def store(tmp_path: Path) -> ShardWriter:
    opened = ShardWriter(tmp_path / "shard")
    yield opened  # type: ignore[misc]
    opened.close()


def keys_of(store: ShardWriter, kind: str) -> list[bytes]:
    prefix = kind_prefix(kind, SYMBOL)
    return [key for key, _ in scan(store.db, prefix, prefix_end(prefix))]


def test_redelivered_trades_add_nothing(store: ShardWriter) -> None:
    trades = tape(500, 10_000)
    assert store.write(windows_of(SYMBOL, trades)) == 500
    assert store.write(windows_of(SYMBOL, trades)) == 0
    store.roll_up(SYMBOL, T0 + HOUR)
    assert store.write(windows_of(SYMBOL, trades.take(slice(100, 200)))) == 0
    assert same(read_all_trades(store.db, SYMBOL), trades)


def test_the_same_agg_id_at_another_time_is_still_stored_once(store: ShardWriter) -> None:
    trades = tape(10, 5_000)
    store.write(windows_of(SYMBOL, trades))
    moved = TradeColumns.of_arrays([*trades.arrays()[:5], trades.time + 7_000, trades.buyer_maker])
    assert store.write(windows_of(SYMBOL, moved)) == 0
    assert same(read_all_trades(store.db, SYMBOL), trades)


def test_roll_up_moves_closed_windows_into_segments_atomically(store: ShardWriter) -> None:
    trades = tape(3_000, 2 * HOUR)
    store.write(windows_of(SYMBOL, trades))
    cutoff = T0 + HOUR + 30 * 60_000
    rolled = store.roll_up(SYMBOL, cutoff)
    assert rolled > 0
    assert all(int(key.rsplit(b":", 1)[1]) >= cutoff for key in keys_of(store, WINDOW))
    assert len(keys_of(store, SEGMENT)) == 2
    assert same(read_all_trades(store.db, SYMBOL), trades)
    assert store.roll_up(SYMBOL, cutoff) == 0


def test_a_late_trade_merges_into_its_rolled_up_segment(store: ShardWriter) -> None:
    trades = tape(2_000, HOUR)
    missing = np.zeros(len(trades), dtype=np.bool_)
    missing[[10, 11, 1500]] = True
    write_rolled(store, trades.take(~missing))
    assert read_coverage(store.db, SYMBOL, None).gaps == [(1010, 1011), (2500, 2500)]
    windows_before = keys_of(store, WINDOW)
    late = trades.take(missing)
    assert store.write(windows_of(SYMBOL, late)) == 3
    assert store.write(windows_of(SYMBOL, late)) == 0
    assert keys_of(store, WINDOW) == windows_before  # into the segment, not a new window
    assert same(read_all_trades(store.db, SYMBOL), trades)
    found = read_coverage(store.db, SYMBOL, None)
    assert (found.trade_count, found.gaps) == (2_000, [])


def test_a_live_write_holds_every_stored_trade_of_each_second_it_touched(store: ShardWriter) -> None:
    """`Written.seconds` (what live bars are built from) is each touched second as stored, whether the write's trades
    went into windows only or partly into a rolled-up segment, and no other second."""
    trades = tape(4_000, 20_000)
    seconds = trades.time - trades.time % 1_000
    first_half = seconds < T0 + 10_000
    held_back = np.zeros(len(trades), dtype=np.bool_)
    held_back[[5, 6, 2_500, 2_501, 3_999]] = True  # two in a rolled-up second, two later, the last one
    store.write(windows_of(SYMBOL, trades.take(first_half & ~held_back)))
    store.roll_up(SYMBOL, T0 + 10_000)
    store.write(windows_of(SYMBOL, trades.take(~first_half & ~held_back & (seconds < T0 + 15_000))))
    for batch in (~first_half & ~held_back & (seconds >= T0 + 15_000), held_back):
        part = trades.take(batch)
        written = store.write_new(windows_of(SYMBOL, part), sync=False)
        stored = read_all_trades(store.db, SYMBOL)
        stored_seconds = stored.time - stored.time % 1_000
        touched = sorted(set((part.time - part.time % 1_000).tolist()))
        assert sorted(written.seconds[SYMBOL]) == touched
        for second, columns in written.seconds[SYMBOL].items():
            assert same(columns, stored.take(stored_seconds == second))


def test_retention_removes_only_expired_trades(store: ShardWriter) -> None:
    trades = tape(6_000, 6 * HOUR)
    write_rolled(store, trades)
    store.write(windows_of(SYMBOL, tape(50, 10_000, first_id=7_000, start_ms=T0 + 6 * HOUR)))
    cutoff = T0 + 2 * HOUR + 1_234_567  # inside the third segment
    expired = int((trades.time < cutoff).sum())
    assert store.delete_before(SYMBOL, cutoff) == expired
    kept = read_all_trades(store.db, SYMBOL)
    assert int(kept.time.min()) >= cutoff
    assert same(kept.take(slice(0, len(kept) - 50)), trades.take(trades.time >= cutoff))
    found = read_coverage(store.db, SYMBOL, None)
    assert found.trade_count == len(kept) and found.first_id == int(kept.agg_id[0])
    assert store.delete_before(SYMBOL, cutoff) == 0


def test_a_windows_only_database_gets_its_index_built(tmp_path: Path) -> None:
    path = tmp_path / "shard"
    trades = tape(300, 5_000)
    db = open_primary(path)
    for (_, start), part in windows_of(SYMBOL, trades).items():
        db.put(window_key(SYMBOL, start), unseal(encode_window(part)))  # format 1: windows unsealed
    db.close()
    store = ShardWriter(path)
    try:
        assert store.index(SYMBOL).count == 300
        assert store.write(windows_of(SYMBOL, trades)) == 0
        assert read_layout(store.db) == (FORMAT_VERSION, 3_600_000)
    finally:
        store.close()


def test_one_writer_per_shard(store: ShardWriter) -> None:
    with pytest.raises(ShardLockedError):
        ShardWriter(store.path)


@pytest.mark.slow
def test_a_store_refused_by_a_full_disk_writes_again_once_reopened(tmp_path: Path) -> None:
    """RocksDB refuses every write on a handle that once failed, even after space is back: reopen recovers."""
    from tests.chaos.system import fill, small_volume
    from tradetape.store.rocks import StoreError

    trades = tape(3_000, 600_000, seed=4)
    first, rest = trades.take(slice(0, 1_000)), trades.take(slice(1_000, None))
    with small_volume(tmp_path / "volume", 16):
        store = ShardWriter(tmp_path / "volume" / "shard")
        try:
            store.write(windows_of(SYMBOL, first))
            filler = tmp_path / "volume" / "filler"
            fill(filler)
            with pytest.raises(StoreError, match="No space left"):
                for _ in range(50):  # until the log cannot grow
                    store.write(windows_of(SYMBOL, tape(2_000, 600_000, seed=5, first_id=10**6 + _ * 2_000)))
            filler.unlink()
            with pytest.raises(StoreError):
                store.write(windows_of(SYMBOL, rest))  # space is back, the handle still refuses
            store.reopen()
            assert store.write(windows_of(SYMBOL, rest)) == len(rest)
            held = store.index(SYMBOL)
            assert held.contains(trades.agg_id).all()
        finally:
            store.close()  # logs, never raises, even for a refused handle


def test_an_unsynced_write_is_readable_at_once_and_survives_the_writer_being_killed(tmp_path: Path) -> None:
    """`write_new(sync=False)` is in the log: a secondary sees it before `sync_log`, a killed writer keeps it."""
    path = tmp_path / "shard"
    child = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from tests.store.synthetic import SYMBOL, tape, windows_of
        from tradetape.store.writer import ShardWriter
        store = ShardWriter(Path({str(path)!r}))
        written = store.write_new(windows_of(SYMBOL, tape(300, 5_000)), sync=False)
        print(written.count, flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, cwd=Path(__file__).parents[2])
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"300"
        reader = SecondaryStore(path)
        try:
            assert same(read_all_trades(reader.catch_up(), SYMBOL), tape(300, 5_000)), "visible before any sync"
        finally:
            reader.close()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    reopened = ShardWriter(path)
    try:
        assert same(read_all_trades(reopened.db, SYMBOL), tape(300, 5_000)), "a killed process lost no unsynced write"
        assert reopened.write(windows_of(SYMBOL, tape(300, 5_000))) == 0
        reopened.sync_log()
    finally:
        reopened.close()


_OPS = st.one_of(
    st.tuples(st.just("live"), st.integers(0, 5), st.integers(1, 30), st.booleans()),
    st.tuples(st.just("roll"), st.integers(0, 6), st.booleans()),
    st.tuples(st.just("retain"), st.integers(0, 3)),
    st.tuples(st.just("import"), st.integers(0, 5), st.integers(1, 30)),
    st.tuples(st.just("reopen")),
    st.tuples(st.just("join")),
)
BASE = T0 + HOUR - 3_000
"""The seconds of the model test: an hour ends after its third, so roll-ups close it and joins come between."""


@settings(max_examples=150, deadline=None)
@given(st.lists(_OPS, min_size=1, max_size=14))
@example([("live", 1, 5, False), ("retain", 2), ("live", 1, 5, False)])  # a window retention deleted, written again
@example([("live", 3, 5, False), ("import", 3, 5), ("live", 3, 5, False)])  # a window an import wrote into
@example([("live", 1, 9, False), ("roll", 2, False), ("live", 2, 9, False), ("roll", 4, False), ("join",),
          ("live", 1, 3, False), ("join",)])  # a late trade merged between a join's read and its put
def test_the_store_holds_what_was_written_whatever_ran_between_writes(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[object, ...]]
) -> None:
    """Live writes into the same seconds again (the writer merges into the windows its last write left in memory),
    with redeliveries, roll-ups (joining the hour they close, or leaving it to a join), retention, imports, reopens
    and joins read at one step and put at a later one between them: after each, the store holds exactly the trades
    written and not expired, and a coverage of its young windows (from their summaries) says so."""
    store = ShardWriter(tmp_path_factory.mktemp("model") / "shard")
    held = TradeColumns.empty()
    next_id = 1_000
    joins: list[tuple[SegmentJoin, tuple[bytes, bytes | None]]] = []
    try:
        for op in ops:
            if op[0] in ("live", "import"):
                second, count = int(op[1]), int(op[2])  # type: ignore[call-overload]
                trades = tape(count, 1_000, seed=next_id, first_id=next_id, start_ms=BASE + second * 1_000)
                next_id += count
                if op[0] == "import":
                    store.import_trades(SYMBOL, trades, roll_up_before_ms=BASE + second * 1_000)
                else:
                    again = held.take(slice(-5, None)) if op[3] else TradeColumns.empty()  # redelivered
                    store.write(windows_of(SYMBOL, TradeColumns.concat([trades, again])))
                held = TradeColumns.concat([held, trades])
            elif op[0] == "roll":
                store.roll_up(SYMBOL, BASE + int(op[1]) * 1_000, join=bool(op[2]))  # type: ignore[call-overload]
            elif op[0] == "retain":
                cutoff = BASE + int(op[1]) * 1_000  # type: ignore[call-overload]
                store.delete_before(SYMBOL, cutoff)
                held = held.take(held.time >= cutoff)
            elif op[0] == "join" and not joins:  # read now, put at the next join
                found = (store.segment_join(*segment) for segment in store.take_unjoined())
                joins = [(join, join.joined()) for join in found if join is not None]
            elif op[0] == "join":
                for join, joined in joins:
                    store.put_join(join, joined)
                joins = []
            else:
                store.reopen()
            assert same(read_all_trades(store.db, SYMBOL), held), op
            for time_range in ((BASE - 1, BASE + 7_000), (BASE + 1_500, BASE + 4_200), (BASE + 2_000, BASE + 3_000)):
                found_coverage = read_coverage(store.db, SYMBOL, time_range)
                assert coverage_figures(found_coverage) == figures_of(held, *time_range), op
    finally:
        store.close()



def test_a_roll_up_adds_to_its_segment_without_encoding_what_it_held_again(store: ShardWriter) -> None:
    """A roll-up's cost must not grow with the hour: the segment's stored bodies are carried over byte for byte."""
    trades = tape(4_000, 40_000)
    first, second = trades.between(T0, T0 + 20_000), trades.between(T0 + 20_000, T0 + 40_000)
    store.write(windows_of(SYMBOL, first))
    store.roll_up(SYMBOL, T0 + 20_000)
    (_, held), = scan(store.db, kind_prefix(SEGMENT, SYMBOL), prefix_end(kind_prefix(SEGMENT, SYMBOL)))
    store.write(windows_of(SYMBOL, second))
    store.roll_up(SYMBOL, T0 + 40_000)
    (_, grown), = scan(store.db, kind_prefix(SEGMENT, SYMBOL), prefix_end(kind_prefix(SEGMENT, SYMBOL)))
    assert unseal(held) in grown
    assert same(read_all_trades(store.db, SYMBOL), trades)


def test_a_segment_the_roll_up_mark_passed_is_joined_into_one_body(store: ShardWriter) -> None:
    """Blocks are for the hour still rolled into; once the mark passes its end, it compresses and decodes as one."""
    trades = tape(6_000, HOUR + 60_000, seed=3)
    ends = (T0 + HOUR // 2, T0 + HOUR - 10_000, T0 + HOUR + 30_000)  # one body, two blocks, past the hour
    for end, blocks in zip(ends, (False, True, False), strict=True):
        store.write(windows_of(SYMBOL, trades.between(T0, end)))
        store.roll_up(SYMBOL, end)
        assert segment_in_blocks(store.db.get(timed_key(SEGMENT, SYMBOL, T0))) == blocks
    assert same(read_all_trades(store.db, SYMBOL), trades.between(T0, T0 + HOUR + 30_000))


def test_a_roll_up_without_join_leaves_the_closed_hour_to_be_joined_beside_it(store: ShardWriter) -> None:
    """Persist joins a closed hour off its store thread: the roll-up lists it, the join is put only over what it
    read, and trades read the same in blocks and joined."""
    trades = tape(6_000, HOUR + 60_000, seed=5)
    for end in (T0 + HOUR - 10_000, T0 + HOUR + 30_000):
        store.write(windows_of(SYMBOL, trades.between(T0, end)))
        store.roll_up(SYMBOL, end, join=False)
    assert store.take_unjoined() == [(SYMBOL, T0)]
    assert store.take_unjoined() == []
    assert segment_in_blocks(store.db.get(timed_key(SEGMENT, SYMBOL, T0)))
    assert same(read_all_trades(store.db, SYMBOL), trades.between(T0, T0 + HOUR + 30_000))
    levels_key = timed_key(MINUTE_LEVELS, SYMBOL, T0)
    grown = store.db.get(levels_key)  # written fast while the hour was open
    found = store.segment_join(SYMBOL, T0)
    assert found is not None
    assert store.put_join(found, found.joined())
    assert not segment_in_blocks(store.db.get(timed_key(SEGMENT, SYMBOL, T0)))
    assert store.segment_join(SYMBOL, T0) is None
    assert same(read_all_trades(store.db, SYMBOL), trades.between(T0, T0 + HOUR + 30_000))
    levels = decode_minute_levels(grown)
    assert store.db.get(levels_key) == encode_minute_levels(T0, levels) != grown  # as at rest, the same levels


def test_a_join_is_not_put_over_a_segment_changed_since_it_was_read(store: ShardWriter) -> None:
    trades = tape(6_000, HOUR + 60_000, seed=6)
    late = trades.take(np.arange(len(trades)) % 97 == 5)  # late trades of the closed hour, held back
    kept = trades.take(np.arange(len(trades)) % 97 != 5)
    for end in (T0 + HOUR - 10_000, T0 + HOUR + 30_000):
        store.write(windows_of(SYMBOL, kept.between(T0, end)))
        store.roll_up(SYMBOL, end, join=False)
    found = store.segment_join(SYMBOL, T0)
    assert found is not None
    joined = found.joined()
    store.write(windows_of(SYMBOL, late.between(T0, T0 + HOUR + 30_000)))  # merged into the segments meanwhile
    assert not store.put_join(found, joined)
    assert same(read_all_trades(store.db, SYMBOL), trades.between(T0, T0 + HOUR + 30_000))


def window_values(store: ShardWriter, start: int) -> list[tuple[bytes, bytes]]:
    """The values of the window starting at `start`: its own and its tail's."""
    own = window_key(SYMBOL, start)
    return scan(store.db, own, window_values_end(own))


def test_a_live_write_into_a_second_that_holds_trades_leaves_what_it_held_alone(store: ShardWriter) -> None:
    """A write costs what the window's last writes added, not what its second holds: before, each write rewrote its
    whole window (~140 times the trades' bytes in RocksDB's log at 2,000 trades/s, which every reader replays)."""
    trades = tape(1_002, 1_000)
    store.write(windows_of(SYMBOL, trades.take(slice(0, 1_000))))
    (_, own), = window_values(store, T0)
    for at in (1_000, 1_001):
        store.write(windows_of(SYMBOL, trades.take(slice(at, at + 1))))
        (own_key, after), (tail, added) = window_values(store, T0)
        assert (own_key, after, tail) == (window_key(SYMBOL, T0), own, tail_key(own_key))
        assert same(decode_window(added), trades.take(slice(1_000, at + 1)))
    assert same(read_all_trades(store.db, SYMBOL), trades)


def test_a_window_s_tail_is_joined_into_its_own_value_after_its_writes_and_once_a_write_goes_past_it(
    store: ShardWriter,
) -> None:
    """A tail written again by every write stays short; a window left behind is one value."""
    trades = tape(200, 2_000, seed=5)
    first = trades.between(T0, T0 + 1_000)
    assert len(first) > 3 * TAIL_WRITES
    held: list[tuple[int, int]] = []
    for at in range(len(first)):  # a trade a write, as at a quiet moment
        store.write(windows_of(SYMBOL, first.take(slice(at, at + 1))))
        values = window_values(store, T0)
        held.append((len(values), len(decode_window(values[-1][1])) if len(values) == 2 else 0))
    assert max(tail for _, tail in held) == TAIL_WRITES
    assert held[: TAIL_WRITES + 2] == [(1, 0), *((2, n) for n in range(1, TAIL_WRITES + 1)), (1, 0)]
    assert held[-1][0] == 2
    past = trades.between(T0 + 1_000, T0 + 2_000).take(slice(0, 1))
    store.write(windows_of(SYMBOL, past))
    assert len(window_values(store, T0)) == 1
    assert same(read_all_trades(store.db, SYMBOL), TradeColumns.concat([first, past]))


def test_a_tail_holding_a_second_s_earliest_trades_counts_in_coverage_and_retention(store: ShardWriter) -> None:
    """A gap filled in a second already written lands in the tail with lower ids and times than the window's own value:
    the whole tape's first time, and retention's first id kept, are the window's, not its own value's."""
    older = tape(10, 1_000, first_id=100, start_ms=T0 - 1_000)
    trades = tape(40, 1_000)
    store.write(windows_of(SYMBOL, older))
    store.write(windows_of(SYMBOL, trades.take(slice(5, None))))
    store.write(windows_of(SYMBOL, trades.take(slice(0, 5))))
    assert len(window_values(store, T0)) == 2
    store.delete_before(SYMBOL, T0)
    found = read_coverage(store.db, SYMBOL, None)
    assert (found.trade_count, found.first_id, found.gaps) == (40, 1_000, [])
    assert (found.first_time, found.last_time) == (int(trades.time.min()), int(trades.time.max()))
