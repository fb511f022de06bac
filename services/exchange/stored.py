"""A stored range served as the exchange's trades (`tradetape exchange --from-store`): a bot backtested unchanged.

The frames come from `TapeClient.replay` (already paced when a speed is asked); each trade is
released into its symbol's history with its stored id, price, quantity, trade ids and trade time,
so the WebSocket streams send it (event time `E` is the moment it is sent, as live) and REST's
aggTrades answers it once released. The feed starts when a first client subscribes, like a dump
replay, and never runs more than `MAX_AHEAD` trades ahead of the slowest connection subscribed to a
symbol: released trades wait in memory for a slow client, and as fast as possible a day would
otherwise outrun any bot (and the history's trimming) at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping

import polars as pl

from tradetape.client import TapeClient
from tradetape.ground.tasks import cancel_and_wait
from tradetape.services.exchange.history import AggTrade, TradeHistory, release
from tradetape.settings import Settings

logger = logging.getLogger(__name__)

MAX_AHEAD = 20_000
"""Trades a symbol's history may hold beyond what its slowest subscribed connection has sent."""
BEHIND_POLL_S = 0.002

StoredFrames = Callable[[], AsyncIterator[pl.DataFrame]]
"""Opens the stored range as frames (`TapeClient.replay`'s columns), once."""


def replayed(
    settings: Settings, symbols: tuple[str, ...], start: int | str, end: int | str, speed: float | None
) -> StoredFrames:
    """The range of `symbols` as the analytics workers replay it (over the NATS `settings` name), `speed` paced."""

    async def frames() -> AsyncIterator[pl.DataFrame]:
        async with await TapeClient.connect(settings) as tape:
            async for frame in tape.replay(symbols, start=start, end=end, speed=speed):
                yield frame

    return frames


def stored_trades(frame: pl.DataFrame) -> dict[str, list[AggTrade]]:
    """A frame's trades by instrument (`BTCUSDT` and `um:BTCUSDT` are two histories), in order, with the
    exchange's decimal strings."""
    rows = frame.select(
        "symbol",
        "agg_id",
        pl.col("price").cast(pl.String),
        pl.col("qty").cast(pl.String),
        "first_id",
        "last_id",
        pl.col("time").dt.epoch("ms"),
        "buyer_maker",
    ).iter_rows()
    by_instrument: dict[str, list[AggTrade]] = {}
    for name, agg_id, price, qty, first_id, last_id, time_ms, maker in rows:
        trade = AggTrade(agg_id, price, qty, first_id, last_id, time_ms, maker)
        by_instrument.setdefault(name, []).append(trade)
    return by_instrument


class StoredFeed:
    """Releases the stored frames into `histories`, started by the first subscriber, held back by the slowest."""

    def __init__(
        self, frames: StoredFrames, histories: Mapping[str, TradeHistory], slowest: Callable[[str], int | None]
    ) -> None:
        self._frames = frames
        self._histories = histories
        self._slowest = slowest
        self._task: asyncio.Task[None] | None = None
        self.released = 0

    def start(self) -> None:
        """Begin releasing; later calls do nothing (the range is served once)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="exchange-from-store")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        try:
            async for frame in self._frames():
                for name, trades in stored_trades(frame).items():
                    history = self._histories[name]
                    await self._wait_for_slowest(name, history)
                    await release(history, trades)
                    self.released += len(trades)
            logger.info("stored range served", extra={"trades": self.released})
        except Exception as exc:  # the one boundary: the exchange keeps serving what was released, and says so
            logger.error("stored range not served to the end", extra={"trades": self.released, "error": repr(exc)})

    async def _wait_for_slowest(self, name: str, history: TradeHistory) -> None:
        while (slowest := self._slowest(name)) is not None and history.end - slowest > MAX_AHEAD:
            await asyncio.sleep(BEHIND_POLL_S)
