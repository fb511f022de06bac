"""The store's upkeep beside persist's write loop: roll-ups, retention and the join of closed hours.

Every `rollup_interval` the windows older than the roll-up age are rolled up into their hour
segments, the hours the roll-up mark passed the end of are joined into one body, and every
hour what is older than the retention is deleted. All of it changes the store on the one
store thread (`StoreThread`), but from a task of its own and in slices of at most
`MAINTENANCE_SLICE_S` (symbol by symbol), so live writes asked meanwhile are stored between
slices. Before, the write loop awaited each whole pass, every symbol's, and stored nothing
until it ended.

Joining decodes and encodes the whole hour: at 2,000 trades/s ~2.1 s of CPU once an hour
(`bench/rollup.py`), and done on the store thread it held every live write that long. Only
reading the value and putting the joined one go to the store thread; the join runs on a
thread of its own, and is put only if the segment still holds what was read
(`ShardWriter.put_join`). A segment left in blocks (a stop before its join, a store error)
reads the same, only slower; nothing is lost either way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from tradetape.ground.tasks import raise_if_cancelled, wait_event
from tradetape.services.persist.store_thread import StoreThread
from tradetape.settings import Settings
from tradetape.store import ShardWriter, StoreError

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAINTENANCE_SLICE_S = 0.02
"""A slice of upkeep on the store thread ends with the symbol that passes this; live writes asked meanwhile wait for
at most that long and one symbol's change."""
RETENTION_INTERVAL_S = 3600.0


class StoreMaintenance:
    """Roll-ups, joins and retention of one shard's store, as they fall due, until stopped."""

    def __init__(self, settings: Settings, store_thread: StoreThread, rollup_interval: float) -> None:
        self._settings = settings
        self._store_thread = store_thread
        self._rollup_interval = rollup_interval
        self.rolled_windows = 0
        self.joined = 0
        self.errors = 0
        """Roll-ups, joins and retentions the store refused (its writes' refusals are the group commit's)."""

    async def run(self, store: ShardWriter, symbols: Callable[[], tuple[str, ...]], stop: asyncio.Event) -> None:
        """Until `stop`: a roll-up pass and the joins it leaves every `rollup_interval`, retention every hour; the
        first of each at once. `symbols` are the shard's as they stand at each pass. A failure is logged here and
        ends the task (the write loop raises it: persist stops, as when it ran the upkeep itself)."""
        try:
            await self._run(store, symbols, stop)
        except Exception:
            logger.exception("store upkeep failed")
            raise

    async def _run(self, store: ShardWriter, symbols: Callable[[], tuple[str, ...]], stop: asyncio.Event) -> None:
        next_retention = time.monotonic()
        # each symbol's last closed hour, which a stop may have left in blocks (before, its join was the roll-up's)
        left = [segment for segment in await self._each_symbol(store, symbols(), self._last_closed) if segment]
        while not stop.is_set():
            raise_if_cancelled()
            started = time.monotonic()
            self.rolled_windows += sum(await self._each_symbol(store, symbols(), self._roll_up))
            for symbol, start in sorted({*left, *await self._store_thread.run(store.take_unjoined)}):
                await self._join(store, symbol, start)
            left = []
            if started >= next_retention:
                await self._each_symbol(store, symbols(), self._retain)
                next_retention = started + RETENTION_INTERVAL_S
            await wait_event(stop, max(0.0, started + self._rollup_interval - time.monotonic()))

    async def _each_symbol(
        self, store: ShardWriter, symbols: tuple[str, ...], change: Callable[[ShardWriter, str], T]
    ) -> list[T]:
        """`change(store, symbol)` for every symbol, on the store thread, a slice at a time."""
        done: list[T] = []
        while len(done) < len(symbols):
            done += await self._store_thread.run(store_slice, store, symbols[len(done) :], change)
        return done

    def _roll_up(self, store: ShardWriter, symbol: str) -> int:
        """On the store thread: `symbol`'s windows older than the roll-up age into their segments; how many."""
        before = int(time.time() * 1000 - self._settings.rollup_age_s * 1000)
        try:
            return store.roll_up(symbol, before, join=False)
        except StoreError as exc:
            self._refused("roll-up failed, will retry", symbol, exc)
            return 0

    def _last_closed(self, store: ShardWriter, symbol: str) -> tuple[str, int] | None:
        """On the store thread: `symbol` and the start of its last closed hour, None before its first roll-up."""
        try:
            start = store.last_closed(symbol)
        except StoreError as exc:
            self._refused("roll-up mark unreadable", symbol, exc)
            return None
        return None if start is None else (symbol, start)

    def _retain(self, store: ShardWriter, symbol: str) -> None:
        """On the store thread: drop what of `symbol` is older than the retention."""
        cutoff = int(time.time() * 1000 - self._settings.retention_days * 86_400_000)
        try:
            store.delete_before(symbol, cutoff)
        except StoreError as exc:
            self._refused("retention failed, will retry", symbol, exc)

    def _refused(self, event: str, symbol: str, exc: StoreError) -> None:
        """A change of `symbol` the store refused: counted, and logged as `event`; the upkeep goes on."""
        self.errors += 1
        logger.error(event, extra={"symbol": symbol, "error": str(exc)})

    async def _join(self, store: ShardWriter, symbol: str, start: int) -> None:
        """The closed hour of `symbol` at `start` joined into one body beside the store thread."""
        try:
            found = await self._store_thread.run(store.segment_join, symbol, start)
            if found is not None:
                joined = await asyncio.to_thread(found.joined)
                self.joined += await self._store_thread.run(store.put_join, found, joined)
        except StoreError as exc:
            self._refused("segment join failed, left in blocks", symbol, exc)


def store_slice(store: ShardWriter, symbols: tuple[str, ...], change: Callable[[ShardWriter, str], T]) -> list[T]:
    """On the store thread: `change` for `symbols` in order, until `MAINTENANCE_SLICE_S` passed (one at least)."""
    deadline = time.monotonic() + MAINTENANCE_SLICE_S
    done: list[T] = []
    for symbol in symbols:
        done.append(change(store, symbol))
        if time.monotonic() >= deadline:
            break
    return done
