"""The building side of live updates: pure computations over what one persist write holds.

Persist (`tradetape.services.persist.live`) turns each write into a `LiveBatch`, the 1 s
bars of the windows it touched and its trades, and splits what would not fit one message;
nothing here reads the store. The rules are in `tradetape.api.live.messages`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tradetape.api.live.messages import IdRun, LiveBatch, LiveLevels
from tradetape.api.methods.bars import BarReply, bar_replies
from tradetape.api.methods.trades import trade_rows
from tradetape.domain.aggregates import SECOND_MS
from tradetape.domain.bars import time_bars
from tradetape.domain.columns import TradeColumns
from tradetape.domain.decimals import format_units
from tradetape.domain.id_runs import IdRuns
from tradetape.domain.sums import exact_group_sums
from tradetape.store import window_start


def id_runs(ids: np.ndarray[Any, np.dtype[np.int64]]) -> list[IdRun]:
    """The inclusive runs of consecutive ids in `ids` (any order)."""
    runs = IdRuns.of_ids(np.unique(ids))
    return list(zip(runs.low.tolist(), runs.high.tolist(), strict=True))


def window_levels(trades: TradeColumns) -> list[LiveLevels]:
    """Volume, buy volume and trade count per (1-second window, price), in one vectorised pass."""
    if len(trades) == 0:
        return []
    windows = window_start(trades.time)
    order = np.lexsort((trades.price, windows))
    window, price = windows[order], trades.price[order]
    qty, sells = trades.qty[order], trades.buyer_maker[order]
    first = np.r_[True, (window[1:] != window[:-1]) | (price[1:] != price[:-1])]
    group = np.cumsum(first) - 1
    n = int(group[-1]) + 1
    volume = exact_group_sums(group, qty, n)
    buy = exact_group_sums(group[~sells], qty[~sells], n)
    count = np.bincount(group, minlength=n).tolist()
    heads = np.flatnonzero(first)
    group_window, group_price = window[heads], price[heads].tolist()
    cuts = [*np.flatnonzero(np.r_[True, group_window[1:] != group_window[:-1]]).tolist(), n]
    return [
        LiveLevels(
            time=int(group_window[lo]),
            price=[format_units(p) for p in group_price[lo:hi]],
            volume=[format_units(v) for v in volume[lo:hi]],
            buy_volume=[format_units(v) for v in buy[lo:hi]],
            trade_count=count[lo:hi],
        )
        for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)
    ]


def stored_batch(trades: TradeColumns) -> LiveBatch:
    """The profile batch of the trades one write newly stored."""
    return LiveBatch(ids=id_runs(trades.agg_id), levels=window_levels(trades))


def split_batch(batch: LiveBatch, max_prices: int) -> list[LiveBatch]:
    """`batch` as parts of at most `max_prices` price levels, each with the batch's ids (so a
    subscriber decides on every part alike, and adds them up), for messages that fit."""
    parts: list[LiveBatch] = []
    levels: list[LiveLevels] = []
    count = 0
    for window in batch.levels:
        for lo in range(0, len(window.price), max_prices):
            hi = lo + max_prices
            piece = window if len(window.price) <= max_prices else LiveLevels(
                time=window.time,
                price=window.price[lo:hi],
                volume=window.volume[lo:hi],
                buy_volume=window.buy_volume[lo:hi],
                trade_count=window.trade_count[lo:hi],
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
