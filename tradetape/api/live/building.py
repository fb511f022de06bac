"""The building side of live updates: pure computations over what one persist write holds.

Persist (`tradetape.services.persist.live`) turns each write into a `LiveBatch`, the 1 s
bars of the windows it touched and its trades, and splits what would not fit one message;
nothing here reads the store. The rules are in `tradetape.api.live.messages`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tradetape.api.live.messages import IdRun, LiveBatch, LiveLevels
from tradetape.api.methods.bars import BarReply, bar_replies
from tradetape.api.methods.trades import trade_rows
from tradetape.domain.aggregates import SECOND_MS
from tradetape.domain.bars import time_bars
from tradetape.domain.columns import Int64Array, TradeColumns
from tradetape.domain.decimals import format_units
from tradetape.domain.sums import exact_group_sums
from tradetape.store import window_start


def stored_batches(writes: Sequence[TradeColumns]) -> list[LiveBatch]:
    """The profile batch of each write's newly stored trades: its agg-id runs, and per 1-second window and
    price the volume, taker-buy volume and count it added.

    All writes in one vectorised pass, each distinct value formatted once: persist turns every write
    since its last update (hundreds a second) into a batch at once, and one pass a write took ~0.5 ms,
    which held its event loop for a large part of a second in one go.
    """
    sizes = [len(trades) for trades in writes]
    if not any(sizes):
        return [LiveBatch(ids=[], levels=[]) for _ in writes]
    write = np.repeat(np.arange(len(writes), dtype=np.int64), sizes)
    agg_id, time, price, qty, sells = (
        np.concatenate([getattr(trades, name) for trades in writes])
        for name in ("agg_id", "time", "price", "qty", "buyer_maker")
    )
    runs = _id_runs(write, agg_id, len(writes))
    window = window_start(time)
    order = np.lexsort((price, window, write))
    write, window, price, qty, sells = write[order], window[order], price[order], qty[order], sells[order]
    first = np.empty(len(order), dtype=np.bool_)
    first[0] = True
    first[1:] = (write[1:] != write[:-1]) | (window[1:] != window[:-1]) | (price[1:] != price[:-1])
    group = np.cumsum(first) - 1
    n = int(group[-1]) + 1
    heads = np.flatnonzero(first)
    prices, volumes, buys = _formatted(
        price[heads], exact_group_sums(group, qty, n), exact_group_sums(group[~sells], qty[~sells], n)
    )
    counts = np.bincount(group, minlength=n).tolist()
    group_write, group_window = write[heads], window[heads]
    cuts = np.flatnonzero(np.r_[True, (group_write[1:] != group_write[:-1]) | (group_window[1:] != group_window[:-1])])
    levels: list[list[LiveLevels]] = [[] for _ in writes]
    for lo, hi in zip(cuts.tolist(), [*cuts[1:].tolist(), n], strict=True):
        levels[int(group_write[lo])].append(
            LiveLevels(
                time=int(group_window[lo]),
                price=prices[lo:hi],
                volume=volumes[lo:hi],
                buy_volume=buys[lo:hi],
                trade_count=counts[lo:hi],
            )
        )
    return [LiveBatch(ids=ids, levels=windows) for ids, windows in zip(runs, levels, strict=True)]


def _id_runs(write: Int64Array, agg_id: Int64Array, writes: int) -> list[list[IdRun]]:
    """Per write (`0 .. writes - 1`), the inclusive runs of consecutive ids among its agg ids (any order,
    repeats allowed)."""
    order = np.lexsort((agg_id, write))
    write, agg_id = write[order], agg_id[order]
    fresh = np.r_[True, (write[1:] != write[:-1]) | (agg_id[1:] != agg_id[:-1])]
    write, agg_id = write[fresh], agg_id[fresh]
    starts = np.flatnonzero(np.r_[True, (write[1:] != write[:-1]) | (agg_id[1:] != agg_id[:-1] + 1)])
    ends = np.r_[starts[1:] - 1, len(agg_id) - 1]
    runs: list[list[IdRun]] = [[] for _ in range(writes)]
    for owner, low, high in zip(write[starts].tolist(), agg_id[starts].tolist(), agg_id[ends].tolist(), strict=True):
        runs[owner].append((low, high))
    return runs


def _formatted(*columns: Int64Array | list[int]) -> list[list[str]]:
    """Each column's values as exact decimal strings (`format_units`), each distinct value formatted once."""
    cache: dict[int, str] = {}
    out: list[list[str]] = []
    for column in columns:
        values = column.tolist() if isinstance(column, np.ndarray) else column
        out.append([cache[v] if v in cache else cache.setdefault(v, format_units(v)) for v in values])
    return out


def split_batch(batch: LiveBatch, max_prices: int) -> list[LiveBatch]:
    """`batch` as parts of at most `max_prices` price levels, each with the batch's ids (so a
    subscriber decides on every part alike, and adds them up), for messages that fit."""
    parts: list[LiveBatch] = []
    levels: list[LiveLevels] = []
    count = 0
    for window in batch.levels:
        for lo in range(0, len(window.price), max_prices):
            hi = lo + max_prices
            piece = (
                window
                if len(window.price) <= max_prices
                else LiveLevels(
                    time=window.time,
                    price=window.price[lo:hi],
                    volume=window.volume[lo:hi],
                    buy_volume=window.buy_volume[lo:hi],
                    trade_count=window.trade_count[lo:hi],
                )
            )
            if levels and count + len(piece.price) > max_prices:
                parts.append(LiveBatch(ids=batch.ids, levels=levels))
                levels, count = [], 0
            levels.append(piece)
            count += len(piece.price)
    parts.append(LiveBatch(ids=batch.ids, levels=levels))
    return parts


def second_bars(trades: TradeColumns, seconds: list[int]) -> list[BarReply]:
    """The 1 s bars of `seconds` (window starts) from all the trades stored in them (any order)."""
    bars = bar_replies(time_bars(trades.sorted_unique(), SECOND_MS))
    wanted = set(seconds)
    return [bar for bar in bars if bar.time in wanted]


TradesPart = tuple[list[dict[str, Any]], list[int]]
"""One message's share of a write: trade rows (`trade_rows`) and void ids."""


def trades_parts(trades: TradeColumns, voids: TradeColumns, max_rows: int) -> list[TradesPart]:
    """One write's trades and void ids as parts of at most `max_rows` rows each, ascending by agg id.

    The rows are `trades`' reply fields (`tradetape.api.methods.trades.trade_rows`); a write
    with nothing new has no part.
    """
    trades = trades.sorted_unique()
    void_ids = np.unique(voids.agg_id).tolist()
    step = max(1, max_rows)
    parts = [(trade_rows(trades.take(slice(lo, lo + step))), list[int]()) for lo in range(0, len(trades), step)]
    parts += [([], void_ids[lo : lo + step]) for lo in range(0, len(void_ids), step)]
    return parts
