"""The gap filler: asks REST for every open gap until it closes, on the gap ledger's schedule.

One loop for all symbols, so the REST weight budget is shared. Each attempt fetches the
first ids of a gap nobody handed over yet, pages of up to 1000 in id order, up to the
gap's end; a short page (REST behind the WebSocket) or any unusable answer leaves the
rest open with a capped, growing delay. After a (re)connection it also asks for the
trades after the newest id of each symbol that has not traded since (the "tail"), and it
checks an implausible live id against the exchange's newest before believing later ones.
When nothing else is due, it probes the tail of a symbol quiet for a while, on the
`TailSchedule`'s pace, for a burst's last trades lost on the WebSocket (`tailprobe`).
It holds back while the publisher is paused or its buffer half full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tradetape.binance.rest import PAGE_LIMIT, GapFillError, RestClient, RestTrade
from tradetape.ground.tasks import raise_if_cancelled
from tradetape.services.ingest.tailprobe import TailSchedule
from tradetape.services.ingest.tape import CONFIRM_WAIT_S, Gap, SymbolTape

logger = logging.getLogger(__name__)

IDLE_POLL_S = 0.5
VERIFY_INTERVAL_S = 10.0
TAIL_RETRY_MAX_S = 30.0

Accept = Callable[[str, list[RestTrade]], int]


@dataclass(slots=True)
class _Tail:
    head: int
    """The symbol's newest id when the tail was asked for; a newer one means live trades flow."""
    next_attempt: float = 0.0
    attempts: int = 0


@dataclass(slots=True)
class ProbeCounters:
    probes: int = 0
    found_probes: int = 0
    """Probes that found trades: a burst's tail was lost."""
    found: int = 0
    """Trades the probes found."""
    failures: int = 0
    failing: int = 0
    """Probes failed in a row (logged at the 1st, 2nd, 4th, ...)."""


class GapFiller:
    def __init__(
        self,
        rest: RestClient,
        tapes: Mapping[str, SymbolTape],
        accept: Accept,
        ready: Callable[[], bool],
        probes: TailSchedule,
    ) -> None:
        self._rest = rest
        self._tapes = tapes
        self._accept = accept
        self._ready = ready
        self.probes = probes
        self.probe_counters = ProbeCounters()
        self._tails: dict[str, _Tail] = {}
        self._verify: dict[str, float] = {}
        self._verified_at: dict[str, float] = {}
        self._wake = asyncio.Event()
        self.attempts = 0

    def request_tails(self, symbols: tuple[str, ...]) -> None:
        for symbol in symbols:
            tape = self._tapes[symbol]
            if tape.watermark is not None:
                self._tails[symbol] = _Tail(tape.head)
        self.poke()

    def request_verify(self, symbol: str) -> None:
        if symbol not in self._verify:
            self._verify[symbol] = max(time.monotonic(), self._verified_at.get(symbol, 0.0) + VERIFY_INTERVAL_S)
            self.poke()

    def poke(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            raise_if_cancelled()
            self._wake.clear()
            now = time.monotonic()
            if not self._ready():
                await self._sleep(IDLE_POLL_S)
                continue
            if await self._one_job(now):
                continue
            await self._sleep(min(IDLE_POLL_S, max(0.0, self._next_due() - now)))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def _next_due(self) -> float:
        due = [t.next_attempt for t in self._tails.values()]
        due += self._verify.values()
        due += (g.next_attempt for tape in self._tapes.values() if tape.gaps for g in tape.gaps)
        due.append(self.probes.due_at())
        return min(due)

    async def _one_job(self, now: float) -> bool:
        """Run the most urgent due job; False if none is due."""
        for symbol, at in list(self._verify.items()):
            if at <= now:
                del self._verify[symbol]
                await self._check_newest(symbol)
                return True
        for symbol, tail in list(self._tails.items()):
            if self._tapes[symbol].head > tail.head:
                del self._tails[symbol]  # live trades arrived: any hole before them is a gap now
            elif tail.next_attempt <= now:
                await self._fill_tail(symbol, tail)
                return True
        due: tuple[float, SymbolTape, Gap] | None = None
        for tape in self._tapes.values():
            for gap in tape.gaps:
                if gap.next_attempt <= now and (due is None or gap.next_attempt < due[0]):
                    due = (gap.next_attempt, tape, gap)
        if due is not None:
            await self._fill_gap(due[1], due[2])
            return True
        return await self._probe(now)

    async def _fill_gap(self, tape: SymbolTape, gap: Gap) -> None:
        symbol, span = tape.symbol, (gap.from_id, gap.to_id)
        first = tape.to_fetch(gap)
        if first is None:  # everything handed over: wait for the acks
            gap.next_attempt = time.monotonic() + CONFIRM_WAIT_S
            return
        self.attempts += 1
        attempts = tape.begin_attempt(*span)
        fetched, complete, error = 0, False, ""
        start = first[0]
        try:
            while True:
                limit = min(PAGE_LIMIT, span[1] - start + 1)
                page = await self._rest.agg_trades(symbol, start, limit)
                fetched += self._accept(symbol, [t for t in page if t[1].agg_id <= span[1]])
                rest = tape.handed.missing(start, span[1])
                if not rest:
                    complete = True
                    break
                if len(page) < limit:
                    error = f"short page: {len(page)} of {limit} from {start}"
                    break
                if rest[0][0] == start:  # `start` still missing after a full page: asking again gets the same
                    answered = page[0][1].agg_id
                    error = (
                        f"REST has no id {start}: its answer starts at {answered}"
                        if answered > start
                        else f"no progress from {start}"
                    )
                    break
                if not self._ready():
                    error = "publisher busy"
                    break
                start = rest[0][0]
        except GapFillError as exc:
            error = exc.reason
        tape.note_attempt(span[0], span[1], complete=complete, error=error, now=time.monotonic())
        (logger.info if complete else logger.warning)(
            "gap filled" if complete else "gap fill incomplete",
            extra={
                "symbol": symbol,
                "from_id": span[0],
                "to_id": span[1],
                "fetched": fetched,
                "complete": complete,
                "attempts": attempts,
                "error": error or "none",
            },
        )

    async def _fetch_tail(self, symbol: str) -> int:
        """Fetch the trades after the symbol's newest id, page by page; the number accepted."""
        tape = self._tapes[symbol]
        fetched = 0
        while True:
            page = await self._rest.agg_trades(symbol, tape.head + 1, PAGE_LIMIT)
            fetched += self._accept(symbol, page)
            if len(page) < PAGE_LIMIT or not self._ready():
                return fetched

    async def _fill_tail(self, symbol: str, tail: _Tail) -> None:
        tape = self._tapes[symbol]
        try:
            fetched = await self._fetch_tail(symbol)
        except GapFillError as exc:
            tail.attempts += 1
            tail.next_attempt = time.monotonic() + min(2.0**tail.attempts / 2, TAIL_RETRY_MAX_S)
            logger.warning("tail fill failed", extra={"symbol": symbol, "attempts": tail.attempts, "error": exc.reason})
            return
        self._tails.pop(symbol, None)
        if fetched:
            logger.info("gap filled", extra={"symbol": symbol, "tail": True, "fetched": fetched, "head": tape.head})

    async def _probe(self, now: float) -> bool:
        """Probe the tail of the symbol quiet longest, if one is due; False if none is."""
        probes = self.probes
        for tape in self._tapes.values():
            if tape.watermark is not None:
                probes.observe(tape.symbol, tape.head, now)
        symbol = probes.next(now)
        if symbol is None:
            return False
        tape, counters = self._tapes[symbol], self.probe_counters
        head, quiet_s = tape.head, now - probes.quiet_since[symbol]
        counters.probes += 1
        try:
            fetched = await self._fetch_tail(symbol)
        except GapFillError as exc:
            counters.failures += 1
            counters.failing += 1
            if counters.failing & (counters.failing - 1) == 0:
                logger.warning(
                    "tail probe failed",
                    extra={"symbol": symbol, "failing": counters.failing, "error": exc.reason},
                )
            fetched = 0
        else:
            counters.failing = 0
        probes.probed(symbol, tape.head, now)
        if fetched:
            counters.found_probes += 1
            counters.found += fetched
            logger.info(
                "tail probe found trades",
                extra={
                    "symbol": symbol,
                    "from_id": head + 1,
                    "to_id": tape.head,
                    "fetched": fetched,
                    "quiet_s": round(quiet_s, 1),
                },
            )
        return True

    async def _check_newest(self, symbol: str) -> None:
        self._verified_at[symbol] = time.monotonic()
        try:
            newest = await self._rest.newest_id(symbol)
        except GapFillError as exc:
            logger.warning("newest id check failed", extra={"symbol": symbol, "error": exc.reason})
            return
        tape = self._tapes[symbol]
        if newest is not None and newest > tape.believe_up_to:
            tape.believe_up_to = newest
            logger.info("newest id confirmed by REST", extra={"symbol": symbol, "newest_id": newest, "head": tape.head})
