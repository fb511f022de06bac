"""Replay of a data.binance.vision aggTrades dump into a symbol's history.

Real trades exercise parsers with real prices, sizes and bursts. Times are shifted to
the present by default, so a replayed trade looks live to time-windowed consumers.
A replay starts when a first client subscribes, so nothing is released before anyone
listens, and it runs once: rows the history recorded as released before (a restart) are
not played again, and the rest are timed no earlier than the last of those.
"""

from __future__ import annotations

import asyncio
import bisect
import csv
import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tradetape.domain.instruments import NAME_SEPARATOR, TOKEN_SEPARATOR, instrument_from_input
from tradetape.errors import InputError
from tradetape.ground.tasks import cancel_and_wait
from tradetape.services.exchange.history import AggTrade, TradeHistory, now_ms, release

logger = logging.getLogger(__name__)

BUNDLED_REPLAY: Path = Path(__file__).parent / "data" / "BTCUSDT-aggTrades-2026-01-01.head5000.csv"
"""5,000 real BTCUSDT trades (ids 3800397495..3800402494), shipped with the package."""

MICROSECONDS_ABOVE = 10**14
"""Dump timestamps above this are µs (spot dumps since 2025), below it ms."""

_FAST_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class DumpTrade:
    """One CSV row, its timestamp normalised to µs so ms and µs dumps compare alike."""

    trade: AggTrade
    time_us: int


class ReplayFormatError(InputError):
    """A dump row that is not a data.binance.vision aggTrades row."""


def symbol_from_path(path: Path) -> str:
    """``BTCUSDT-aggTrades-2026-01-01.csv`` → ``BTCUSDT``; ``um.BTCUSDT-aggTrades-…`` (a token) → ``um:BTCUSDT``."""
    prefix, sep, _ = path.name.partition("-aggTrades")
    if not sep or not prefix:
        raise ValueError(f"cannot tell the symbol from the file name {path.name!r}")
    return instrument_from_input(prefix.replace(TOKEN_SEPARATOR, NAME_SEPARATOR, 1))


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false"):
        raise ReplayFormatError(f"not a boolean: {text!r}")
    return lowered == "true"


def parse_row(row: Sequence[str]) -> DumpTrade:
    """Parse ``aggTradeId,price,qty,firstTradeId,lastTradeId,timestamp,isBuyerMaker,...``."""
    if len(row) < 7:
        raise ReplayFormatError(f"expected at least 7 columns, got {len(row)}: {row!r}")
    try:
        stamp = int(row[5])
        time_us = stamp if stamp > MICROSECONDS_ABOVE else stamp * 1000
        trade = AggTrade(
            agg_id=int(row[0]),
            price=row[1].strip(),
            qty=row[2].strip(),
            first_id=int(row[3]),
            last_id=int(row[4]),
            time_ms=time_us // 1000,
            buyer_maker=_parse_bool(row[6]),
        )
    except ValueError as exc:
        raise ReplayFormatError(f"bad aggTrades row {row!r}: {exc}") from exc
    return DumpTrade(trade, time_us)


def read_dump(path: Path) -> list[DumpTrade]:
    """Read a whole dump; a header line, if present, is skipped."""
    rows: list[DumpTrade] = []
    with path.open(newline="") as handle:
        for line_no, row in enumerate(csv.reader(handle), start=1):
            if not row:
                continue
            if line_no == 1 and not row[0].strip().isdigit():
                continue
            rows.append(parse_row(row))
    return rows


def _check_order(rows: Sequence[DumpTrade], path: Path) -> None:
    """Refuse a dump the history could not take: ids must rise, times must not fall."""
    for before, after in itertools.pairwise(rows):
        if after.trade.agg_id <= before.trade.agg_id or after.time_us < before.time_us:
            raise ReplayFormatError(f"{path.name}: trade {after.trade.agg_id} does not follow {before.trade.agg_id}")


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """Trades with their final ``T`` and when to release each (seconds after the start)."""

    trades: list[AggTrade]
    offsets: list[float] | None
    """None: release everything at once."""


def plan(rows: Sequence[DumpTrade], *, speed: float | None, original_times: bool, start_ms: int) -> ReplayPlan:
    """Retime a dump for release at ``start_ms``.

    With a speed factor, each trade is released ``(t - t0) / speed`` after the start and,
    unless ``original_times``, its ``T`` is that release moment. As fast as possible, the
    whole dump is shifted so its last trade happened at ``start_ms``, keeping the spacing.
    """
    if speed is not None and speed <= 0:
        raise ValueError("speed must be positive or None")
    if not rows:
        return ReplayPlan([], None if speed is None else [])
    first_us = rows[0].time_us
    offsets = None if speed is None else [(r.time_us - first_us) / speed / 1e6 for r in rows]
    if original_times:
        return ReplayPlan([r.trade for r in rows], offsets)
    if offsets is None:
        shift = start_ms - rows[-1].trade.time_ms
        trades = [r.trade.retimed(r.trade.time_ms + shift) for r in rows]
    else:
        trades = [r.trade.retimed(start_ms + int(o * 1000)) for r, o in zip(rows, offsets, strict=False)]
    return ReplayPlan(trades, offsets)


def not_before(trades: list[AggTrade], floor_ms: int) -> list[AggTrade]:
    """Trades (times non-decreasing) with any time below ``floor_ms`` raised to it: none before a recorded one."""
    return [t if t.time_ms >= floor_ms else t.retimed(floor_ms) for t in trades]


class Replay:
    """Plays one dump into one history, once, started by the first subscriber."""

    def __init__(
        self,
        path: Path,
        history: TradeHistory,
        *,
        speed: float | None = None,
        original_times: bool = False,
    ) -> None:
        if speed is not None and speed <= 0:
            raise ValueError("speed must be positive or None")
        self.path = path
        self.history = history
        self.speed = speed
        self.original_times = original_times
        rows = read_dump(path)
        _check_order(rows, path)
        last = history.last
        self.rows = rows if last is None else [r for r in rows if r.trade.agg_id > last.agg_id]
        if len(self.rows) < len(rows):
            logger.info(
                "replay of %s: %d of %d trades of %s were released before (up to id %d)",
                history.name,
                len(rows) - len(self.rows),
                len(rows),
                path.name,
                last.agg_id if last else 0,
            )
        self.released = 0
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._done = asyncio.Event()

    @property
    def started(self) -> bool:
        return self._started.is_set()

    def start(self) -> None:
        """Begin releasing trades; later calls do nothing (a replay runs once)."""
        if self._task is not None:
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"replay-{self.history.name}")
        self._started.set()

    async def wait_done(self) -> int:
        """Wait until the replay has been started and has released everything (or stopped).

        Returns the number of trades released.
        """
        await self._done.wait()
        return self.released

    async def stop(self) -> None:
        """Cancel a running replay; safe to call at any time and more than once."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        self._done.set()

    async def _run(self) -> None:
        began = time.perf_counter()
        replay_plan = plan(self.rows, speed=self.speed, original_times=self.original_times, start_ms=now_ms())
        last = self.history.last
        trades = replay_plan.trades if last is None else not_before(replay_plan.trades, last.time_ms)
        logger.info(
            "replay of %s started: %d trades from %s, speed %s",
            self.history.name,
            len(trades),
            self.path.name,
            "max" if self.speed is None else self.speed,
        )
        try:
            if replay_plan.offsets is None:
                await self._release_fast(trades)
            else:
                await self._release_timed(trades, replay_plan.offsets)
            logger.info(
                "replay of %s finished: %d trades in %.2f s",
                self.history.name,
                self.released,
                time.perf_counter() - began,
            )
        finally:
            self._done.set()

    async def _release_fast(self, trades: list[AggTrade]) -> None:
        for index in range(0, len(trades), _FAST_CHUNK):
            chunk = trades[index : index + _FAST_CHUNK]
            await release(self.history, chunk)
            self.released += len(chunk)
            await asyncio.sleep(0)

    async def _release_timed(self, trades: list[AggTrade], offsets: list[float]) -> None:
        loop = asyncio.get_running_loop()
        origin = loop.time()
        index = 0
        while index < len(trades):
            due = bisect.bisect_right(offsets, loop.time() - origin, lo=index)
            if due > index:
                await release(self.history, trades[index:due])
                self.released += due - index
                index = due
            if index < len(trades):
                await asyncio.sleep(max(0.0, offsets[index] - (loop.time() - origin)))
