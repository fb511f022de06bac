"""Deterministic synthetic trades for symbols without a recorded dump, at any rate.

The tape must be tested at rates no real day offers on demand (tens of thousands of
trades a second) and with the shapes that break naive code: bursts of trades in one
millisecond, heavy-tailed sizes, runs of one side. Prices, sizes and sides come from a
seeded generator in vectorised blocks, so one seed always gives one sequence; only the
trade times come from the clock.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import numpy as np

from services.exchange.history import AggTrade, TradeHistory, now_ms
from tradetape.runtime.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

SCALE = 10**8
"""Prices and quantities are handled as integers in units of 1e-8, Binance's finest step."""
LOT_UNITS = 1_000
"""Quantities are multiples of 0.00001."""
FIRST_ID = 1_000_000

_BLOCK_CLUSTERS = 4096
_BURST_PROBABILITY = 0.01
_MAX_BURST = 50
_SIDE_FLIP_PROBABILITY = 0.3
_NOISE_STEPS = np.array([-2, -1, 0, 1, 2])
_NOISE_WEIGHTS = np.array([0.03, 0.17, 0.6, 0.17, 0.03])


def to_units(text: str) -> int:
    """A positive decimal string with at most 8 places, in units of 1e-8."""
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal: {text!r}") from exc
    units = value * SCALE
    if value <= 0 or units != units.to_integral_value():
        raise ValueError(f"not a positive decimal with at most 8 places: {text!r}")
    return int(units)


def format_units(units: int) -> str:
    """Units of 1e-8 as Binance writes them: always 8 decimal places."""
    return f"{units // SCALE}.{units % SCALE:08d}"


def default_start_price(symbol: str) -> str:
    """A plausible level so generated BTC and ETH look like BTC and ETH."""
    if symbol.startswith("BTC"):
        return "87000"
    if symbol.startswith("ETH"):
        return "3000"
    return "100"


@dataclass(frozen=True, slots=True)
class _Block:
    cluster_sizes: list[int]
    price_units: list[int]
    qty_units: list[int]
    buyer_maker: list[bool]
    trade_counts: list[int]


class TradeGenerator:
    """A seeded sequence of trade clusters (one taker order sweeping the book each).

    A cluster shares one side and one timestamp and walks the price in the taker's
    direction, one aggregate trade per price level, as a real sweep does. Agg ids and
    first/last trade ids are consecutive.
    """

    def __init__(
        self,
        symbol: str,
        seed: int = 0,
        *,
        tick_size: str = "0.01",
        start_price: str | None = None,
        first_agg_id: int = FIRST_ID,
        first_trade_id: int = FIRST_ID,
    ) -> None:
        self.symbol = symbol
        self._tick_units = to_units(tick_size)
        start_units = to_units(start_price or default_start_price(symbol))
        self._tick = max(1, start_units // self._tick_units)
        self._maker = False
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(symbol.encode())]))
        self._next_agg_id = first_agg_id
        self._next_trade_id = first_trade_id
        self._block = self._new_block()
        self._cluster = 0
        self._trade = 0

    def _new_block(self) -> _Block:
        rng = self._rng
        count = _BLOCK_CLUSTERS
        sizes = rng.geometric(0.65, count)
        bursts = np.minimum(5 + (rng.pareto(1.5, count) * 5).astype(np.int64), _MAX_BURST)
        sizes = np.where(rng.random(count) < _BURST_PROBABILITY, bursts, sizes)
        flips = rng.random(count) < _SIDE_FLIP_PROBABILITY
        makers = np.logical_xor.accumulate(flips) ^ self._maker
        self._maker = bool(makers[-1])

        total = int(sizes.sum())
        first_in_cluster = np.zeros(total, dtype=bool)
        first_in_cluster[np.concatenate(([0], np.cumsum(sizes)[:-1]))] = True
        trade_makers = np.repeat(makers, sizes)
        noise = rng.choice(_NOISE_STEPS, total, p=_NOISE_WEIGHTS)
        sweep = np.where(trade_makers, -1, 1) * (1 + (rng.random(total) < 0.1))
        ticks = np.maximum(self._tick + np.cumsum(np.where(first_in_cluster, noise, sweep)), 1)
        self._tick = int(ticks[-1])

        lots = np.clip(np.rint(np.exp(rng.normal(np.log(40.0), 1.6, total))), 1, 10**7)
        counts = rng.geometric(0.75, total)
        return _Block(
            cluster_sizes=sizes.astype(np.int64).tolist(),
            price_units=(ticks.astype(np.int64) * self._tick_units).tolist(),
            qty_units=(lots.astype(np.int64) * LOT_UNITS).tolist(),
            buyer_maker=trade_makers.tolist(),
            trade_counts=counts.astype(np.int64).tolist(),
        )

    def peek_size(self) -> int:
        """How many trades the next cluster holds."""
        if self._cluster == len(self._block.cluster_sizes):
            self._block = self._new_block()
            self._cluster = 0
            self._trade = 0
        return self._block.cluster_sizes[self._cluster]

    def take_cluster(self, time_ms: int) -> list[AggTrade]:
        """The next cluster, every trade of it stamped ``time_ms``."""
        size = self.peek_size()
        block, start = self._block, self._trade
        cluster: list[AggTrade] = []
        for index in range(start, start + size):
            first_id = self._next_trade_id
            self._next_trade_id += block.trade_counts[index]
            cluster.append(
                AggTrade(
                    agg_id=self._next_agg_id,
                    price=format_units(block.price_units[index]),
                    qty=format_units(block.qty_units[index]),
                    first_id=first_id,
                    last_id=self._next_trade_id - 1,
                    time_ms=time_ms,
                    buyer_maker=block.buyer_maker[index],
                )
            )
            self._next_agg_id += 1
        self._cluster += 1
        self._trade += size
        return cluster

    def take(self, count: int, time_ms: int = 0) -> list[AggTrade]:
        """At least ``count`` trades, in whole clusters (for tests and benchmarks)."""
        trades: list[AggTrade] = []
        while len(trades) < count:
            trades.extend(self.take_cluster(time_ms))
        return trades


class GeneratorFeed:
    """Releases a generator's clusters into a history at ``rate`` trades/s on a timer.

    Releasing in batches every ``interval`` seconds keeps the cost per trade low enough for
    20k+ trades/s. A cluster is released once its last trade is due and is stamped with
    that due time, so ``T`` never lies in the future and bursts share one millisecond.
    """

    def __init__(
        self,
        generator: TradeGenerator,
        history: TradeHistory,
        rate: float,
        *,
        interval: float = 0.02,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.generator = generator
        self.history = history
        self.rate = rate
        self.interval = interval
        self.released = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin trading; later calls do nothing."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"generator-{self.history.symbol}")

    async def stop(self) -> None:
        """Stop trading; safe to call more than once."""
        task, self._task = self._task, None
        if await cancel_and_wait(task):
            logger.info("generator for %s stopped after %d trades", self.history.symbol, self.released)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        origin, origin_ms = loop.time(), now_ms()
        logger.info("generator for %s started at %g trades/s", self.history.symbol, self.rate)
        max_lag = max(1.0, self.rate * 2)
        while True:
            await asyncio.sleep(self.interval)
            due = (loop.time() - origin) * self.rate
            if due - self.released > max_lag:
                skip = (due - self.released) / self.rate
                origin += skip
                origin_ms += int(skip * 1000)
                due = (loop.time() - origin) * self.rate
                logger.warning("generator for %s fell behind; skipped %.2f s", self.history.symbol, skip)
            batch: list[AggTrade] = []
            released = self.released
            while released + self.generator.peek_size() <= due:
                size = self.generator.peek_size()
                due_ms = origin_ms + int((released + size - 1) * 1000 / self.rate)
                batch.extend(self.generator.take_cluster(due_ms))
                released += size
            if batch:
                self.history.append(batch)
                self.released = released
