"""Live writes into 1-second windows: a window's own value, its tail, and what the writer keeps of them in memory.

A window's first trades are its own value; what later writes add goes into its tail (`tail_key`), so a write
encodes the trades of the window's last few writes, not all its second holds: each write rewrote the whole window
before, ~140 times the trades' bytes in RocksDB's log at 2,000 trades/s, which every reader replays
(`bench/windows.py`). The tail is joined into the window's own value once a write goes past the window, or after
`TAIL_WRITES` writes. (A chunk a write, deleted at the join, was tried: the deleted keys made every scan of the
young windows 10 times slower; the tail's versions are one key's, which a scan skips at once.)

Each write that adds to a window puts its summary too (`window_summary_key`, a `SegmentSummary` of every trade the
window holds, grown by the write's trades): a coverage of the young windows reads those, not the windows (an analytics
worker answering coverage of the last 10 s read ~4 MB of windows a query at 10,000 trades/s).

The writer's last successful write leaves its windows in memory (`WindowWrites`): the next live write, mostly
into the same second, adds to them without reading and decoding them back. Only a write that succeeded keeps
them; every other change of the store (a failed write, a roll-up and so an import, retention, a reopen) forgets
them, and a window not held is read back from the store.
"""

from __future__ import annotations

from dataclasses import dataclass

from rocksdict import Rdict, WriteBatch

from tradetape.domain.columns import TradeColumns
from tradetape.store.codec import decode_window, encode_window, merge_windows
from tradetape.store.keys import (
    WINDOW,
    WINDOW_SUMMARY,
    kind_prefix,
    tail_key,
    timed_key,
    window_key,
    window_start,
    window_summary_key,
)
from tradetape.store.sealed import decoded
from tradetape.store.segments import SegmentSummary
from tradetape.store.window_reads import whole_window_values
from tradetape.store.windows import split_by

TAIL_WRITES = 16
"""Writes a window's tail takes before it is joined into the window's own value: a write encodes the tail again, a
join the whole window (at 2,000 trades/s, ~285 writes a second of ~7 trades each)."""

WINDOW_KINDS = (WINDOW, WINDOW_SUMMARY)
"""The keys of a window: its own and its tail's (`WINDOW`), its summary's."""


@dataclass(frozen=True, slots=True)
class HeldWindow:
    """A window as the writer stored it: every trade it holds, its summary, its tail's trades, and how many writes the
    tail took."""

    symbol: str
    start: int
    trades: TradeColumns
    summary: SegmentSummary
    tail: TradeColumns | None
    tail_writes: int


class WindowWrites:
    """The windows the writer's last successful write left, and those of the write under way."""

    def __init__(self) -> None:
        self._recent: dict[bytes, HeldWindow] = {}
        self._staged: dict[bytes, HeldWindow] = {}

    def begin(self) -> None:
        """A write starts: nothing of it is staged yet."""
        self._staged = {}

    def taken(self) -> None:
        """RocksDB took the write's batch: its windows are what the next write adds to."""
        self._recent, self._staged = self._staged, {}

    def forget(self) -> None:
        """The store changed otherwise (or a write may or may not be in the log): read windows back next time."""
        self._recent = {}

    def merge(self, db: Rdict, batch: WriteBatch, symbol: str, trades: TradeColumns) -> list[tuple[int, TradeColumns]]:
        """New trades (none stored yet) into their windows in `batch`; each window's start and trades as stored after
        the write."""
        if len(trades) == 0:
            return []
        parts = list(split_by(trades, window_start(trades.time)))
        newest = parts[-1][0]
        windows: list[tuple[int, TradeColumns]] = []
        for start, unsorted in parts:
            part = unsorted.sorted_unique()  # as readers take it: so its summary counts what they read
            key = window_key(symbol, start)
            held = self._recent.get(key) or _stored_window(db, symbol, start, key)
            added = SegmentSummary.of(start, part)
            if held is None:
                held = HeldWindow(symbol, start, part, added, None, 0)
                batch.put(key, encode_window(part))
            elif start < newest or held.tail_writes >= TAIL_WRITES:
                held = _join_tail(batch, key, held, part, added)
            else:
                tail = part if held.tail is None else merge_windows(held.tail, part)
                batch.put(tail_key(key), encode_window(tail))
                joined = merge_windows(held.trades, part)
                held = HeldWindow(symbol, start, joined, held.summary.joined(added), tail, held.tail_writes + 1)
            batch.put(window_summary_key(symbol, start), held.summary.encode())
            self._staged[key] = held
            windows.append((start, held.trades))
        for key, left in self._recent.items():  # windows the last write left with a tail, which this one went past
            if left.symbol == symbol and left.tail is not None and left.start < newest and key not in self._staged:
                _join_tail(batch, key, left)
        return windows


def _stored_window(db: Rdict, symbol: str, start: int, key: bytes) -> HeldWindow | None:
    """The window `key` as stored (its own value and its tail), None if it holds no trade."""
    values = {k: decoded(k, v, decode_window) for k, v in whole_window_values(db, key)}
    if not values:
        return None
    tail = values.get(tail_key(key))
    trades = TradeColumns.concat(list(values.values())).sorted_unique()
    return HeldWindow(symbol, start, trades, SegmentSummary.of(start, trades), tail, 0 if tail is None else 1)


def _join_tail(
    batch: WriteBatch,
    key: bytes,
    held: HeldWindow,
    part: TradeColumns | None = None,
    added: SegmentSummary | None = None,
) -> HeldWindow:
    """Put every trade of the window (and `part`, trades it does not hold, summarised by `added`) as its own value,
    its tail deleted; the window so."""
    trades, summary = held.trades, held.summary
    if part is not None and added is not None:
        trades, summary = merge_windows(trades, part), summary.joined(added)
    batch.put(key, encode_window(trades))
    if held.tail is not None:
        batch.delete(tail_key(key))
    return HeldWindow(held.symbol, held.start, trades, summary, None, 0)


def delete_windows_before(batch: WriteBatch, symbol: str, before: int) -> None:
    """Delete every window of `symbol` that starts before `before` (a window start), its tail and its summary."""
    for kind in WINDOW_KINDS:
        batch.delete_range(kind_prefix(kind, symbol), timed_key(kind, symbol, before))
