"""Ingest's ledger entries read at most a few times a second, however often they are asked for.

Analytics answers every `coverage` query with its symbol's open gaps from the ledger; a KV get
a query was ~23 % of a worker's busy time under 225 coverage queries a second (bench/pipeline.py's
pollers). An entry read here serves every query of its symbol for `LEDGER_MAX_AGE_S`, and the
queries arriving while it is read wait for that one read. Ingest writes the ledger once a
second, so an answer shows a ledger write at most a quarter of that later than a read per query
would. Kept in step with what is asked, not with what ingest writes: a watch of the bucket would
bring every worker each instrument's entry each second (thousands a second with `ALL`), whether
or not anyone asks. A read that fails is not kept: the next query reads again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from tradetape.bus.ledger import LedgerEntry, ledger_bucket, read_entry

LEDGER_MAX_AGE_S = 0.25
"""How long one read of an entry answers its symbol's queries: a quarter of ingest's ledger interval (1 s)."""
PRUNE_AT = 1024
"""Entries held before the expired ones are dropped (only served symbols are asked: `AnalyticsService`)."""


class LedgerCache:
    """Each asked symbol's entry and when its read began, for one event loop (not shared between threads)."""

    def __init__(
        self,
        js: Callable[[], JetStreamContext],
        max_age_s: float = LEDGER_MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._js, self._max_age_s, self._clock = js, max_age_s, clock
        self._kv: KeyValue | None = None
        self._reads: dict[str, tuple[float, asyncio.Future[LedgerEntry | None]]] = {}

    async def entry(self, symbol: str) -> LedgerEntry | None:
        """`symbol`'s entry as read at most `max_age_s` ago (None: no bucket or no entry); raises what the read
        raised (`LedgerFormatError`, NATS errors). A caller's cancel or deadline leaves the shared read running."""
        now = self._clock()
        held = self._reads.get(symbol)
        if held is None or now - held[0] >= self._max_age_s or _failed(held[1]):
            if len(self._reads) >= PRUNE_AT:  # a worker's served symbols, each asked: keep only the fresh ones
                self._reads = {s: r for s, r in self._reads.items() if now - r[0] < self._max_age_s}
            held = self._reads[symbol] = (now, _shared(self._read(symbol)))
        return await asyncio.shield(held[1])

    async def _read(self, symbol: str) -> LedgerEntry | None:
        if self._kv is None:
            self._kv = await ledger_bucket(self._js())
        return None if self._kv is None else await read_entry(self._kv, symbol)


def _shared(read: Awaitable[LedgerEntry | None]) -> asyncio.Future[LedgerEntry | None]:
    """`read` as a task whose failure is retrieved even when every asker gave up waiting (no "never retrieved")."""
    task = asyncio.ensure_future(read)
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    return task


def _failed(read: asyncio.Future[LedgerEntry | None]) -> bool:
    return read.done() and (read.cancelled() or read.exception() is not None)
