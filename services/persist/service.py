"""The persist service: JetStream trades → 1-second windows in the shard's RocksDB.

Each fetched batch is validated, assembled into windows, merged into the store and
synced; only then are its messages acked. A crash at any point therefore loses nothing
(unacked messages are redelivered) and duplicates nothing (windows merge by agg id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from tradetape.bus.codec import decode_trade
from tradetape.bus.deadletter import publish_deadletter
from tradetape.bus.provision import ensure_persist_consumer, ensure_streams
from tradetape.bus.subjects import TRADES_STREAM, symbol_of
from tradetape.domain.trade import TradeFormatError, TradeRow
from tradetape.runtime.logs import ProgressLog
from tradetape.settings import Settings
from tradetape.store.windows import assemble_windows
from tradetape.store.writer import WindowStore

logger = logging.getLogger(__name__)

FETCH_BATCH = 5000
FETCH_TIMEOUT_S = 0.2
FETCH_RETRY_S = 0.5
LINGER_S = 0.1
MIN_FETCH_S = 0.005
STATS_INTERVAL_S = 10.0
RETENTION_INTERVAL_S = 3600.0


class PersistService:
    def __init__(
        self,
        settings: Settings,
        nc: Client,
        *,
        batch: int = FETCH_BATCH,
        fetch_timeout: float = FETCH_TIMEOUT_S,
        linger: float = LINGER_S,
        stats_interval: float = STATS_INTERVAL_S,
    ) -> None:
        self._settings = settings
        self._nc = nc
        self._js = nc.jetstream()
        self._batch = batch
        self._fetch_timeout = fetch_timeout
        self._linger = linger
        self._stats_interval = stats_interval
        self.written: Counter[str] = Counter()
        self.deadlettered: Counter[str] = Counter()
        self.batches = 0
        self.already_stored = 0
        self._progress = ProgressLog(logger)

    async def run(self, stop: asyncio.Event) -> None:
        await ensure_streams(self._js, self._settings)
        durable = await ensure_persist_consumer(self._js, self._settings)
        subscription = await self._js.pull_subscribe_bind(durable, TRADES_STREAM)
        store = WindowStore(self._settings.shard_dir)
        logger.info(
            "persist started",
            extra={
                "shard": self._settings.shard,
                "consumer": durable,
                "symbols": ",".join(self._settings.symbols),
                "path": str(self._settings.shard_dir),
            },
        )
        next_stats = time.monotonic() + self._stats_interval
        next_retention = 0.0
        try:
            while not stop.is_set():
                if time.monotonic() >= next_retention:
                    self._apply_retention(store)
                    next_retention = time.monotonic() + RETENTION_INTERVAL_S
                msgs = await self._collect(subscription, stop)
                if msgs:
                    await self._persist(store, msgs)
                if time.monotonic() >= next_stats:
                    self._log_counts("persist progress")
                    next_stats = time.monotonic() + self._stats_interval
        finally:
            with contextlib.suppress(NatsError):
                await subscription.unsubscribe()
            store.close()
            self._log_counts("persist stopped", force=True)

    async def _collect(self, subscription: JetStreamContext.PullSubscription, stop: asyncio.Event) -> list[Msg]:
        """The messages of one write: up to `batch`, gathered for at most `linger` after the first.

        One synced write per ~100 ms instead of one per fetch keeps the cost per trade low at
        live rates (a fetch then brings a dozen trades) and adds at most `linger` of delay.
        """
        msgs: list[Msg] = []
        flush_at: float | None = None
        while len(msgs) < self._batch and not stop.is_set():
            timeout = self._fetch_timeout if flush_at is None else flush_at - time.monotonic()
            if timeout < MIN_FETCH_S:
                break
            try:
                got = await subscription.fetch(self._batch - len(msgs), timeout=timeout)
            except TimeoutError:  # nats' own TimeoutError is a subclass; fetch raises both
                got = []
            except NatsError as exc:
                logger.warning("fetch failed, retrying", extra={"error": repr(exc)})
                await asyncio.sleep(FETCH_RETRY_S)
                got = []
            if got and flush_at is None:
                flush_at = time.monotonic() + self._linger
            elif not got and flush_at is None:
                break
            msgs += got
        return msgs

    async def _persist(self, store: WindowStore, msgs: list[Msg]) -> None:
        """Write one batch durably, then ack every message of it."""
        trades: list[tuple[str, TradeRow]] = []
        for msg in msgs:
            symbol = symbol_of(msg.subject)
            try:
                trades.append((symbol, decode_trade(msg.data)))
            except TradeFormatError as exc:
                await publish_deadletter(self._js, "persist", symbol, msg.data, str(exc))
                self.deadlettered[symbol] += 1
        windows = assemble_windows(trades)
        added = store.write(windows)
        per_symbol = Counter(symbol for symbol, _ in trades)
        self.written.update(per_symbol)
        self.already_stored += len(trades) - added
        for msg in msgs:
            await msg.ack()
        self.batches += 1

    def _apply_retention(self, store: WindowStore) -> None:
        cutoff = int(time.time() * 1000 - self._settings.retention_days * 86_400_000)
        for symbol in self._settings.symbols:
            store.delete_before(symbol, cutoff)

    def _log_counts(self, event: str, *, force: bool = False) -> None:
        for symbol in self._settings.symbols:
            counts: dict[str, object] = {
                "symbol": symbol,
                "trades": self.written[symbol],
                "deadlettered": self.deadlettered[symbol],
            }
            self._progress.log(event, symbol, counts, force=force)
        totals: dict[str, object] = {"batches": self.batches, "already_stored": self.already_stored}
        self._progress.log(event, "", totals, force=force)
