"""Deterministic synthetic trades for symbols without a recorded dump, at any rate.

The tape must be tested at rates no real day offers on demand (tens of thousands of
trades a second) and with the shapes that break naive code: bursts of trades in one
millisecond, heavy-tailed sizes, runs of one side. Prices, sizes and sides come from a
seeded generator in vectorised blocks, so one seed always gives one sequence; only the
trade times come from the clock. With a state directory, ids continue across restarts
right after the last one recorded (`released`): ingest dedupes by agg id, so a restarted
simulator reusing ids would have its trades dropped, and one skipping ids would leave a
gap nobody can fill. `past_trades` invents the finished days before a first start, so
the dumps and REST have a history to serve.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson

from tradetape.domain.instruments import split_instrument
from tradetape.ground.tasks import cancel_and_wait
from tradetape.services.exchange.history import AggTrade, TradeHistory, now_ms, release

logger = logging.getLogger(__name__)

SCALE = 10**8
"""Prices and quantities are handled as integers in units of 1e-8, Binance's finest step."""
LOT_UNITS = 1_000
"""Quantities are multiples of 0.00001 (spot, USD-M)."""
CONTRACT_UNITS = SCALE
"""COIN-M quantities are whole contracts."""
RPI_SHARE = 0.2
"""USD-M: the share of trades that filled RPI orders too, so that ``nq`` is below ``q``."""
FIRST_ID = 1_000_000

_BLOCK_CLUSTERS = 4096
_BURST_PROBABILITY = 0.01
_MAX_BURST = 50
_SIDE_FLIP_PROBABILITY = 0.3
_NOISE_STEPS = np.array([-2, -1, 0, 1, 2])
_NOISE_WEIGHTS = np.array([0.03, 0.17, 0.6, 0.17, 0.03])

_STALL_SECONDS = 2.0
"""A feed this far behind its schedule (and more than two bursts) was stalled, not bursty,
and skips ahead instead of flooding the tape."""
CHECKPOINT_INTERVAL = 1.0
"""Seconds between writes of a generated symbol's next ids in the former state files (`IdCheckpoint`)."""
PAST_RATE = 0.1
"""Trades/s of the invented past days (8,640 a day): enough to chart and fetch, small to keep."""
_TRADE_IDS_PER_AGG = 4
"""Trade-id margin per agg-id margin: an agg trade averages 1.33 trade ids."""


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


def format_each(units: list[int]) -> list[str]:
    """`format_units` of each, formatting each distinct value once: a block's prices walk a few hundred
    ticks and its sizes repeat, so this is about a tenth of the formatting (the simulator's largest
    own cost per trade at 10,000 trades/s)."""
    texts = {value: format_units(value) for value in set(units)}
    return [texts[value] for value in units]


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
    prices: list[str]
    qtys: list[str]
    buyer_maker: list[bool]
    trade_counts: list[int]
    normal_qtys: list[str] | None


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
        lot_units: int = LOT_UNITS,
        normal_qty: bool = False,
    ) -> None:
        """`symbol`: the instrument's name (``um:ETHUSDT``), which seeds it, so each market trades its own tape.

        `lot_units`: the quantity step (`CONTRACT_UNITS` for COIN-M); `normal_qty`: USD-M's ``nq`` too.
        """
        self.symbol = symbol
        self._lot_units = lot_units
        self._tick_units = to_units(tick_size)
        start_units = to_units(start_price or default_start_price(split_instrument(symbol)[1]))
        self._tick = max(1, start_units // self._tick_units)
        self._maker = False
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(symbol.encode())]))
        # A generator of its own, so that spot's sequences stay what they were for a seed.
        self._rpi_rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(symbol.encode()), 1]))
        self._normal_qty = normal_qty
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
        normal: list[str] | None = None
        if self._normal_qty:
            rpi_rng = self._rpi_rng
            rpi_lots = np.where(rpi_rng.random(total) < RPI_SHARE, np.floor(lots * rpi_rng.random(total)), 0)
            normal = format_each(((lots - rpi_lots).astype(np.int64) * self._lot_units).tolist())
        return _Block(
            cluster_sizes=sizes.astype(np.int64).tolist(),
            prices=format_each((ticks.astype(np.int64) * self._tick_units).tolist()),
            qtys=format_each((lots.astype(np.int64) * self._lot_units).tolist()),
            buyer_maker=trade_makers.tolist(),
            trade_counts=counts.astype(np.int64).tolist(),
            normal_qtys=normal,
        )

    @property
    def next_agg_id(self) -> int:
        return self._next_agg_id

    @property
    def next_trade_id(self) -> int:
        return self._next_trade_id

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
        agg_id, trade_id = self._next_agg_id, self._next_trade_id
        prices, qtys, normals, makers, counts = (
            block.prices, block.qtys, block.normal_qtys, block.buyer_maker, block.trade_counts
        )
        cluster: list[AggTrade] = []
        for index in range(start, start + size):
            first_id, trade_id = trade_id, trade_id + counts[index]
            normal = None if normals is None else normals[index]
            cluster.append(
                AggTrade(agg_id, prices[index], qtys[index], first_id, trade_id - 1, time_ms, makers[index], normal)
            )
            agg_id += 1
        self._next_agg_id, self._next_trade_id = agg_id, trade_id
        self._cluster += 1
        self._trade += size
        return cluster

    def take(self, count: int, time_ms: int = 0) -> list[AggTrade]:
        """At least ``count`` trades, in whole clusters (for tests and benchmarks)."""
        trades: list[AggTrade] = []
        while len(trades) < count:
            trades.extend(self.take_cluster(time_ms))
        return trades


def id_margins(rate: float, checkpoint_interval: float = CHECKPOINT_INTERVAL) -> tuple[int, int]:
    """Agg and trade ids a feed at ``rate`` may release between checkpoints, with room to spare."""
    agg = int(rate * checkpoint_interval * 2) + _MAX_BURST
    return agg, agg * _TRADE_IDS_PER_AGG


class Clock(Protocol):
    """Where a feed reads the time and waits: the system's, or a test's faster one."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; schedules the releases."""
        ...

    def now_ms(self) -> int:
        """Wall-clock epoch ms; anchors the trade times."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Real time: the monotonic clock, the wall clock and ``asyncio.sleep``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now_ms(self) -> int:
        return now_ms()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(frozen=True, slots=True)
class IdState:
    """A generated symbol's next ids as the former state file ``<SYMBOL>.json`` recorded them."""

    next_agg_id: int
    next_trade_id: int
    clean: bool
    """True once the feed stopped in order: the ids are exact."""
    agg_margin: int = 0
    """After an unclean end, served agg ids are below ``next_agg_id + agg_margin``."""
    trade_margin: int = 0


class IdCheckpoint:
    """The state file of simulators before the released-trade record: read once, so an upgraded one reuses no id.

    Such a simulator wrote its next ids (and, after a kill -9, a margin it may have run past
    them) but not its trades; a state directory without a record but with this file resumes above it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> IdState | None:
        """The recorded state, None without a file.

        A file that cannot be read raises ``ValueError`` rather than risk reusing ids.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            data: Any = orjson.loads(raw)
            state = IdState(
                next_agg_id=data["next_agg_id"],
                next_trade_id=data["next_trade_id"],
                clean=data["clean"],
                agg_margin=data.get("agg_margin", 0),
                trade_margin=data.get("trade_margin", 0),
            )
        except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"{self.path}: unreadable generator state ({exc}); delete it to start afresh") from exc
        numbers = (state.next_agg_id, state.next_trade_id, state.agg_margin, state.trade_margin)
        if not isinstance(state.clean, bool) or not all(type(n) is int and n >= 0 for n in numbers):
            raise ValueError(f"{self.path}: invalid generator state {data!r}; delete it to start afresh")
        return state

    def resume(self, agg_margin: int = 0, trade_margin: int = 0) -> tuple[int, int] | None:
        """The first agg and trade id above every id the former simulator can have served; None without a file.

        After an unclean end the larger of the recorded and the given margins is skipped.
        """
        state = self.load()
        if state is None:
            return None
        if state.clean:
            return state.next_agg_id, state.next_trade_id
        agg_skip, trade_skip = max(agg_margin, state.agg_margin), max(trade_margin, state.trade_margin)
        logger.warning("generator state %s was not closed cleanly; skipping %d agg ids", self.path, agg_skip)
        return state.next_agg_id + agg_skip, state.next_trade_id + trade_skip


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a generated symbol goes on: its next agg and trade ids and its price."""

    next_agg_id: int
    next_trade_id: int
    price: str | None = None
    """The last traded price (None: the symbol's default level)."""


def resume_after(trades: Sequence[AggTrade]) -> Resume | None:
    """Right after the newest of released trades (oldest first); None if there are none.

    Void rows carry no trade ids or price: those come from the newest real trade before them.
    """
    if not trades:
        return None
    real = next((t for t in reversed(trades) if not t.void), None)
    next_trade_id = FIRST_ID if real is None else real.last_id + 1
    return Resume(trades[-1].agg_id + 1, next_trade_id, None if real is None else real.price)


def past_trades(
    symbol: str,
    seed: int,
    tick_size: str,
    start_ms: int,
    end_ms: int,
    *,
    last_agg_id: int,
    last_trade_id: int,
    rate: float = PAST_RATE,
    lot_units: int = LOT_UNITS,
    normal_qty: bool = False,
) -> list[AggTrade]:
    """Invented trades in ``[start_ms, end_ms)`` at ``rate``, numbered to end at the given ids.

    Seeded apart from the live sequence, so a day's trades are the same for one seed. Empty
    if they would need ids below 1 (a dump with small ids).
    """
    generator = TradeGenerator(
        symbol,
        seed + 1,
        tick_size=tick_size,
        first_agg_id=0,
        first_trade_id=0,
        lot_units=lot_units,
        normal_qty=normal_qty,
    )
    trades: list[AggTrade] = []
    while (time_ms := start_ms + int(len(trades) * 1000 / rate)) < end_ms:
        trades.extend(generator.take_cluster(time_ms))
    agg_shift = last_agg_id - (generator.next_agg_id - 1)
    trade_shift = last_trade_id - (generator.next_trade_id - 1)
    if not trades or agg_shift < 1 or trade_shift < 1:
        return []
    return [
        dataclasses.replace(
            t, agg_id=t.agg_id + agg_shift, first_id=t.first_id + trade_shift, last_id=t.last_id + trade_shift
        )
        for t in trades
    ]


def release_interval(rate: float) -> float:
    """Seconds between a feed's releases: about ten trades a release, from 2 ms (busy) to 20 ms (quiet).

    A trade waits for its release after its stamped time, which Binance, pushing as it matches,
    does not do: a fixed 20 ms added ~10 ms (p50) to every latency measured from ``T`` at
    2,000 trades/s; a wake-up costs ~50 µs, so 500 a second at the busiest stay cheap.
    """
    return min(0.02, max(0.002, 10.0 / rate))


class GeneratorFeed:
    """Releases a generator's clusters into a history at ``rate`` trades/s on a timer.

    Releasing in batches every ``interval`` seconds (by default `release_interval` of the rate)
    keeps the cost per trade low enough for 20k+ trades/s (and one record write per batch).
    A cluster is released once its first trade is due and is stamped with that due time,
    so ``T`` never lies in the future (nor before the last recorded trade), bursts share one
    millisecond, and a burst of any size only borrows from the following trades' time instead of stalling.
    """

    def __init__(
        self,
        generator: TradeGenerator,
        history: TradeHistory,
        rate: float,
        *,
        interval: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.generator = generator
        self.history = history
        self.rate = rate
        self.interval = release_interval(rate) if interval is None else interval
        self.clock: Clock = clock or SystemClock()
        self.released = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin trading; later calls do nothing."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"generator-{self.history.name}")

    async def stop(self) -> None:
        """Stop trading; safe to call more than once."""
        task, self._task = self._task, None
        if await cancel_and_wait(task):
            logger.info("generator for %s stopped after %d trades", self.history.name, self.released)

    async def _run(self) -> None:
        clock, generator, rate = self.clock, self.generator, self.rate
        last = self.history.last
        origin, origin_ms = clock.monotonic(), float(max(clock.now_ms(), last.time_ms if last else 0))
        logger.info("generator for %s started at %g trades/s", self.history.name, rate)
        max_lag = max(rate * _STALL_SECONDS, 2.0 * _MAX_BURST)
        while True:
            await clock.sleep(self.interval)
            now = clock.monotonic()
            lag = (now - origin) * rate - self.released
            if lag > max_lag:
                skip = lag / rate
                origin += skip
                origin_ms += skip * 1000
                logger.warning("generator for %s fell behind; skipped %.2f s", self.history.name, skip)
            due = (now - origin) * rate
            batch: list[AggTrade] = []
            released = self.released
            while released <= due:
                cluster = generator.take_cluster(int(origin_ms + released * 1000 / rate))
                batch.extend(cluster)
                released += len(cluster)
            if batch:
                await release(self.history, batch)
                self.released = released
