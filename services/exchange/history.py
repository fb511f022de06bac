"""The per-symbol record of released trades, and the exchange's wire encoding of them.

A trade exists for the outside world once it is appended here: WebSocket connections
stream from it and REST answers from it, so a REST call never returns a trade the stream
has not released. Positions are absolute sequence numbers, so a connection's cursor stays
valid when the oldest trades are trimmed away to bound memory. With a record
(`released.ReleasedRows`) a batch is written durably before it is released, and the
history starts from what the record holds, so a restart forgets nothing it sent.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson

from tradetape.domain.instruments import Market, instrument_name

logger = logging.getLogger(__name__)


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch, the exchange's clock for ``E`` and ``T``."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class AggTrade:
    """One aggregate trade as the exchange stores it; price and qty stay decimal strings."""

    agg_id: int
    price: str
    qty: str
    first_id: int
    last_id: int
    time_ms: int
    buyer_maker: bool
    normal_qty: str | None = None
    """USD-M's ``nq``: the quantity without RPI orders (at most ``qty``); None on the other markets."""

    @property
    def void(self) -> bool:
        """An invalidated duplicate (`p`, `q` 0, `f`, `l` -1): REST and the dumps serve it, streams skip it."""
        return self.first_id == VOID_TRADE_ID

    def voided(self) -> AggTrade:
        """This trade as Binance serves one it invalidated: same id, time and side, no price, quantity or fills."""
        void_id, normal = VOID_TRADE_ID, None if self.normal_qty is None else VOID_DECIMAL
        return AggTrade(
            self.agg_id, VOID_DECIMAL, VOID_DECIMAL, void_id, void_id, self.time_ms, self.buyer_maker, normal
        )

    def retimed(self, time_ms: int) -> AggTrade:
        return dataclasses.replace(self, time_ms=time_ms)


class ReleaseRecord(Protocol):
    """The durable record a history writes before it releases (`released.ReleasedRows`, which stores `AggTrade`)."""

    def load(self) -> list[AggTrade]: ...

    def append(self, trades: Sequence[AggTrade]) -> None: ...

    def rewrite(self, trades: Sequence[AggTrade]) -> None: ...

    def close(self) -> None: ...


RECORD_RETRY_S = 1.0

VOID_DECIMAL = "0.00000000"
"""How Binance's REST spells the price and quantity of a void row."""
VOID_TRADE_ID = -1


def encode_event(
    trade: AggTrade, symbol: str, event_ms: int, time_scale: int = 1, *, best_match: bool = True
) -> bytes:
    """Encode the aggTrade stream payload; ``time_scale`` 1000 gives µs timestamps.

    Spot's carries ``M`` (`best_match`); futures' do not, and USD-M's carry ``nq``.
    """
    event: dict[str, object] = {
        "e": "aggTrade",
        "E": event_ms * time_scale,
        "s": symbol,
        "a": trade.agg_id,
        "p": trade.price,
        "q": trade.qty,
        "f": trade.first_id,
        "l": trade.last_id,
        "T": trade.time_ms * time_scale,
        "m": trade.buyer_maker,
    }
    if best_match:
        event["M"] = True
    if trade.normal_qty is not None:
        event["nq"] = trade.normal_qty
    return orjson.dumps(event)


def encode_rest_rows(trades: Iterable[AggTrade], *, best_match: bool = True) -> bytes:
    """Encode an aggTrades response body (no ``e``, ``E``, ``s``; ``M`` on spot, ``nq`` on USD-M)."""
    rows: list[dict[str, object]] = []
    for t in trades:
        row: dict[str, object] = {
            "a": t.agg_id,
            "p": t.price,
            "q": t.qty,
            "f": t.first_id,
            "l": t.last_id,
            "T": t.time_ms,
            "m": t.buyer_maker,
        }
        if best_match:
            row["M"] = True
        if t.normal_qty is not None:
            row["nq"] = t.normal_qty
        rows.append(row)
    return orjson.dumps(rows)


class TradeHistory:
    """Append-only trades of one symbol, with wake-ups for streaming and id/time lookups.

    ``max_trades`` bounds memory for long generator runs: the oldest quarter is dropped
    once the limit is passed, so trimming is rare and amortised. A ``record`` is loaded
    (its rows were released before) and written before every release.
    """

    def __init__(
        self,
        symbol: str,
        max_trades: int | None = None,
        *,
        market: Market = Market.SPOT,
        void_every: int = 0,
        record: ReleaseRecord | None = None,
    ) -> None:
        if max_trades is not None and max_trades < 1:
            raise ValueError("max_trades must be positive or None")
        self.symbol = symbol
        """The exchange's own symbol (what frames, REST and dumps call it)."""
        self.market = market
        self.name = instrument_name(market, symbol)
        """The instrument's name (``um:BTCUSDT``), for logs and the exchange's callers."""
        self.void_every = void_every
        """Trades released with an agg id that is a multiple of this are voids (0: none; the `void_every` fault)."""
        self._max_trades = max_trades
        self._record = record
        self._trades: list[AggTrade] = record.load() if record is not None else []
        self._ids: list[int] = [t.agg_id for t in self._trades]
        self._times: list[int] = [t.time_ms for t in self._trades]
        self._released: list[float] = [float("-inf")] * len(self._trades)
        """Monotonic release time of each trade, for a REST endpoint that lags the stream."""
        self._base = 0
        self.trimmed_through_ms: int | None = None
        """The time of the newest trade trimmed away (None: none was): a day up to it is no longer whole."""
        self._listeners: set[asyncio.Event] = set()
        if self._trades:
            logger.info("%s: %d released trades recorded before, up to id %d", self.name, len(self), self._ids[-1])
        if max_trades is not None and len(self._trades) > max_trades:
            self._trim(len(self._trades) - max_trades * 3 // 4)

    def __len__(self) -> int:
        return len(self._trades)

    @property
    def start(self) -> int:
        """Absolute position of the oldest retained trade."""
        return self._base

    @property
    def end(self) -> int:
        """Absolute position one past the newest trade: where a live-only cursor starts."""
        return self._base + len(self._trades)

    @property
    def last(self) -> AggTrade | None:
        return self._trades[-1] if self._trades else None

    def trades(self) -> list[AggTrade]:
        """A copy of the retained trades, oldest first."""
        return list(self._trades)

    def append(self, trades: Sequence[AggTrade]) -> None:
        """Release trades (ids increasing, times non-decreasing) and wake the listeners."""
        if not trades:
            return
        previous = self._trades[-1] if self._trades else None
        for trade in trades:
            if previous is not None and (trade.agg_id <= previous.agg_id or trade.time_ms < previous.time_ms):
                raise ValueError(
                    f"{self.name}: trade {trade.agg_id} at {trade.time_ms} does not follow "
                    f"{previous.agg_id} at {previous.time_ms}"
                )
            previous = trade
        if self.void_every:
            every = self.void_every
            trades = [trade.voided() if trade.agg_id % every == 0 else trade for trade in trades]
        if self._record is not None:
            self._record.append(trades)
        self._trades.extend(trades)
        self._ids.extend(t.agg_id for t in trades)
        self._times.extend(t.time_ms for t in trades)
        self._released.extend([time.monotonic()] * len(trades))
        if self._max_trades is not None and len(self._trades) > self._max_trades:
            self._trim(len(self._trades) - self._max_trades * 3 // 4)
        for event in self._listeners:
            event.set()

    def _trim(self, count: int) -> None:
        self.trimmed_through_ms = self._times[count - 1]
        del self._trades[:count]
        del self._ids[:count]
        del self._times[:count]
        del self._released[:count]
        self._base += count
        if self._record is not None:
            try:
                self._record.rewrite(self._trades)
            except OSError as exc:  # the trades are released: the record keeps the old rows, retried at the next trim
                logger.error("%s: the released-trade record was not shortened: %s", self.name, exc)
        logger.debug("%s: trimmed %d old trades, %d retained", self.name, count, len(self))

    def close(self) -> None:
        """Close the record (the exchange stops); appending again reopens it."""
        if self._record is not None:
            self._record.close()

    def since(self, position: int) -> tuple[int, list[AggTrade]]:
        """Trades from an absolute position on; a trimmed-away position resumes at the oldest.

        Returns the position actually read from, so a caller can tell how many it missed.
        """
        start = max(position, self._base)
        return start, self._trades[start - self._base :]

    def add_listener(self, event: asyncio.Event) -> None:
        """Set ``event`` on every append (a connection's single wake-up for all its streams)."""
        self._listeners.add(event)

    def remove_listener(self, event: asyncio.Event) -> None:
        self._listeners.discard(event)

    async def wait_until(self, end: int) -> None:
        """Return once ``self.end >= end``, e.g. once a test has seen enough trades released."""
        event = asyncio.Event()
        self.add_listener(event)
        try:
            while self.end < end:
                event.clear()
                await event.wait()
        finally:
            self.remove_listener(event)

    def from_id(
        self,
        agg_id: int,
        limit: int,
        start_ms: int | None = None,
        end_ms: int | None = None,
        released_before: float | None = None,
    ) -> list[AggTrade]:
        """Up to ``limit`` trades with ``a >= agg_id``, within the time bounds when given.

        ``released_before`` (monotonic) hides trades released later: a lagging REST endpoint.
        """
        index = bisect.bisect_left(self._ids, agg_id)
        if start_ms is not None:
            index = max(index, bisect.bisect_left(self._times, start_ms))
        trades = self._take_forward(index, limit, end_ms)
        if released_before is not None:
            visible = bisect.bisect_right(self._released, released_before) - index
            trades = trades[: max(visible, 0)]
        return trades

    def between(self, start_ms: int | None, end_ms: int | None, limit: int) -> list[AggTrade]:
        """Trades with ``start_ms <= T <= end_ms`` (bounds inclusive, each optional).

        With a start, the first ``limit`` from it; with only an end, the last ``limit``
        up to it, as an end alone asks for the trades that led up to that moment.
        """
        if start_ms is not None:
            return self._take_forward(bisect.bisect_left(self._times, start_ms), limit, end_ms)
        stop = len(self._times) if end_ms is None else bisect.bisect_right(self._times, end_ms)
        return self._trades[max(0, stop - limit) : stop]

    def latest(self, limit: int) -> list[AggTrade]:
        """The most recent ``limit`` trades, oldest first."""
        return self._trades[-limit:] if limit > 0 else []

    def _take_forward(self, index: int, limit: int, end_ms: int | None) -> list[AggTrade]:
        stop = index + limit
        if end_ms is not None:
            stop = min(stop, bisect.bisect_right(self._times, end_ms))
        return self._trades[index:stop] if stop > index else []


async def release(history: TradeHistory, trades: Sequence[AggTrade]) -> None:
    """Append, waiting while the record cannot be written (a full disk): trades go out recorded, in order, or not yet.

    The caller (a feed, a replay) makes nothing new meanwhile, so nothing piles up and no id is skipped.
    """
    failing = False
    while True:
        try:
            history.append(trades)
        except OSError as exc:
            if not failing:
                logger.error("%s: released trades not recorded (%s); holding them back", history.name, exc)
            failing = True
            await asyncio.sleep(RECORD_RETRY_S)
            continue
        if failing:
            logger.info("%s: released trades recorded again", history.name)
        return
