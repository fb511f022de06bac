"""The persist service: JetStream trades → 1-second windows → segments in the shard's RocksDB.

start (resolve the symbols, lock the shard, open the store, bind the consumer) → run
(fetch what arrived, validate, write it durably, announce it, ack it; beside it the store's
upkeep: roll-ups, joins, retention, `tradetape.services.persist.maintenance`) → drain (the
batch in hand is written and acked before the loop ends) → stop (close the store, release
the shard). A crash at any point loses nothing (unacked messages are redelivered) and
duplicates nothing (the store drops agg ids it holds).

The shard's symbols are its share of `TRADETAPE_SYMBOLS`, or with `ALL` of the exchange's
TRADING symbols, asked at start (`tradetape.binance.symbols`). `ALL` on a single shard
consumes every trade subject, so a symbol first seen on the stream (listed after the start)
is adopted: stored, rolled up, importable and in the manifest from its first trade. On N
shards the exchange is asked again every `symbols_refresh_s`: the shard's share of what was
listed meanwhile joins its consumer's filter, and a catch-up consumer brings the listed
symbols' messages from before (`PersistConsumer.grow`).

Group commit, visible before durable (`tradetape.services.persist.commit`): a write holds whatever
arrived while the last one was written, is announced at once, and is synced and acked beside the next.

Bad messages never stop the tape: one that is not a valid aggTrade is dead-lettered
with the reason and acked; one that the server gave up on after `max_deliver` attempts
is dead-lettered from its advisory. A store that refuses a write (I/O error, full disk)
is retried with backoff while the batch is held unacked, its ack deadlines extended.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import sys
import time
from collections import Counter, deque

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.errors import Error as JetStreamError

from tradetape.binance.aggtrade import TradeFormatError
from tradetape.binance.symbols import follow_listings, resolve_symbols
from tradetape.bus.codec import TradeDecoder
from tradetape.bus.deadletter import publish_deadletter
from tradetape.bus.replies import ReplyGuard
from tradetape.bus.shard_stores import ShardStore, record_shard_store
from tradetape.bus.subjects import TRADES_STREAM, trade_instrument, written_subject
from tradetape.domain.symbols import SymbolError
from tradetape.domain.trade import TradeRow
from tradetape.ground.backoff import retry_until
from tradetape.ground.tasks import cancel_and_wait
from tradetape.runtime.logs import ProgressLog
from tradetape.runtime.metrics import ServiceMetrics, ServiceSnapshot
from tradetape.services.persist.admission import IMPLAUSIBLE_ID, Refusal
from tradetape.services.persist.commit import GroupCommit
from tradetape.services.persist.consumer import MaxDeliveries, PersistConsumer
from tradetape.services.persist.importer import BulkImporter
from tradetape.services.persist.live import LivePublisher
from tradetape.services.persist.maintenance import StoreMaintenance
from tradetape.services.persist.store_thread import StoreThread
from tradetape.settings import Settings
from tradetape.store import ShardWriter, write_manifest

logger = logging.getLogger(__name__)

FETCH_BATCH = 5000
FETCH_TIMEOUT_S = 0.2
"""How long a fetch waits for the next trade when none is pending (then the consumer's health is looked at)."""
AVAILABLE_S = 0.003
"""How long a fetch of what is pending waits for the server's answer (and, when nothing is, for a trade)."""
FETCH_RETRY_S = 0.5
CATCH_UP_FETCH_S = 0.5
STATS_INTERVAL_S = 10.0
ROLLUP_INTERVAL_S = 10.0
RECORD_S = 2.0
"""The longest one try at recording the shard's store may take (a cluster electing its leaders answers late)."""
MAX_SUBJECTS_REMEMBERED = 100_000
"""Trade subjects whose instrument is remembered (far above every instrument of every market); more are parsed."""
IMPLAUSIBLE_DELIVERIES = 3
"""An implausible id is delivered this often before it is dead-lettered: ingest writes its ledger every second,
so a real jump ingest believed (after asking REST) shows there by the next delivery."""
GIL_SWITCH_S = 0.0005
"""While persist runs, a thread waiting for the GIL gets it after this long (Python's default: 5 ms). The store
thread takes the GIL back after every RocksDB call while the event loop fetches the next write's messages:
measured in bench/pipeline.py at 2,000 trades/s, stream → write p99 105-110 ms instead of 162-183 ms."""


class PersistService:
    def __init__(
        self,
        settings: Settings,
        nc: Client,
        *,
        batch: int = FETCH_BATCH,
        fetch_timeout: float = FETCH_TIMEOUT_S,
        stats_interval: float = STATS_INTERVAL_S,
        rollup_interval: float = ROLLUP_INTERVAL_S,
    ) -> None:
        self._settings = settings
        self._nc = nc
        self._js = nc.jetstream()
        self.replies = ReplyGuard("persist")
        """Checks the reply subjects of bulk imports and of the `$SRV` verbs (`announce`)."""
        self._batch = batch
        self._fetch_timeout = fetch_timeout
        self._stats_interval = stats_interval
        self._symbols: tuple[str, ...] = ()
        """The shard's symbols, known once `run` has resolved them."""
        self._owned: set[str] = set()
        self._subject_symbols: dict[str, str | None] = {}
        self._write_spacing_s = settings.persist_write_spacing_ms / 1000
        self._next_write = 0.0
        """When the next write's messages may be fetched (`persist_write_spacing_ms` after the last write's)."""
        self._decoder = TradeDecoder()
        """A fetched batch's trades decoded in one call (event loop only)."""
        self.deadlettered: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        """Trades refused after they were read, by kind (`conflict`, `implausible_id`); each is dead-lettered."""
        self.held_implausible = 0
        """Deliveries of implausible ids given back to be checked again against ingest's ledger."""
        self._consumer = PersistConsumer(settings, self._js)
        self.live = LivePublisher(nc)
        self._written_subject = written_subject(settings.shard)
        self._progress = ProgressLog(logger)
        self._store: ShardWriter | None = None
        self._importer: BulkImporter | None = None
        self._store_thread = StoreThread()
        """The one thread that changes the store: live writes, roll-ups, retention and bulk imports, one at a time."""
        # Roll up at least four times per roll-up age, so windows never pile up past it.
        self._maintenance = StoreMaintenance(
            settings, self._store_thread, min(rollup_interval, settings.rollup_age_s / 4)
        )
        self._commit = GroupCommit(
            nc, self._store_thread, self.live, self._written_subject, settings.ingest_max_id_jump
        )
        self.metrics = ServiceMetrics("persist", self._metrics_snapshot)

    @property
    def written(self) -> Counter[str]:
        """Trades stored and acked, by symbol."""
        return self._commit.written

    @property
    def voids(self) -> Counter[str]:
        """Void rows stored (`tradetape.store.voids`): ids without a trade."""
        return self._commit.voids

    @property
    def batches(self) -> int:
        return self._commit.batches

    @property
    def already_stored(self) -> int:
        """Trades delivered again that the store already held (dropped)."""
        return self._commit.already_stored

    @property
    def windows_written(self) -> int:
        return self._commit.windows_written

    @property
    def store_errors(self) -> int:
        return self._commit.store_errors + self._maintenance.errors

    @property
    def rolled_windows(self) -> int:
        return self._maintenance.rolled_windows

    @property
    def steps(self) -> deque[tuple[str, int]]:
        """The last writes' steps (`GroupCommit.steps`)."""
        return self._commit.steps

    @property
    def reprovisioned(self) -> int:
        """How often the consumer had disappeared and was provisioned again."""
        return self._consumer.reprovisioned

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbols this shard stores (empty until resolved at start)."""
        return self._symbols

    async def run(self, stop: asyncio.Event) -> None:
        switch = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_S)
        try:
            await self._run(stop)
        finally:
            sys.setswitchinterval(switch)

    async def _run(self, stop: asyncio.Event) -> None:
        resolved = await resolve_symbols(self._settings, stop)
        if not resolved:
            return
        self._symbols = self._settings.shard_share(resolved)
        self._owned = set(self._symbols)
        self._consumer.symbols = self._symbols
        store = ShardWriter(self._settings.shard_dir)
        advisories = MaxDeliveries(self._nc, self._js, self._consumer.durable, self.deadlettered)
        importer = self._importer = BulkImporter(
            self._nc,
            store,
            self._symbols,
            self._settings.rollup_age_s,
            self._store_thread,
            self.replies,
            self._written_subject,
        )
        try:
            manifest = write_manifest(self._settings.shard_dir, self._settings.shard, self._symbols)
            if not await self._record_store(manifest, stop):
                return
            await advisories.start()
            await importer.start()
            await self._consumer.bind()
            self._store = store
            logger.info(
                "persist started",
                extra={
                    "shard": self._settings.shard,
                    "consumer": self._consumer.durable,
                    "symbols": ",".join(self._symbols),
                    "from_exchange": self._settings.symbols_from_exchange,
                    "path": str(self._settings.shard_dir),
                },
            )
            live = asyncio.create_task(self.live.run(stop), name="persist-live")
            listings = asyncio.create_task(self._follow_listings(resolved, stop), name="persist-listings")
            upkeep = self._maintenance.run(store, lambda: self._symbols, stop)
            maintenance = asyncio.create_task(upkeep, name="persist-maintenance")
            try:
                await self._loop(store, stop, maintenance)
            finally:
                await cancel_and_wait(maintenance)  # what the store thread holds of it ends before the store closes
                await cancel_and_wait(listings)
                await cancel_and_wait(live)
                await self.live.flush()
        finally:
            self._store = None
            self._importer = None
            await importer.stop()
            await advisories.stop()
            await self._consumer.close()
            await asyncio.to_thread(self._store_thread.shutdown)  # what the thread still writes finishes first
            await asyncio.to_thread(self._commit.close)
            store.close()
            self._log_counts("persist stopped", force=True)

    async def _record_store(self, store_id: str, stop: asyncio.Event) -> bool:
        """Record in NATS KV that this store serves the shard, so analytics workers of other directories refuse.

        Tried again until `stop` while the bucket cannot answer yet (a cluster electing its leaders); False if stopped.
        """
        here = ShardStore(
            shard=self._settings.shard,
            store_id=store_id,
            host=socket.gethostname(),
            dir=str(self._settings.shard_dir.resolve()),
            since_ms=int(time.time() * 1000),
        )

        async def record() -> tuple[ShardStore | None]:
            return (await record_shard_store(self._js, here, replicas=self._settings.stream_replicas),)

        transient = (NatsError, JetStreamError)
        recorded = await retry_until(stop, record, transient=transient, what="shard store record", timeout_s=RECORD_S)
        if recorded is None:
            return False
        (previous,) = recorded
        if previous is not None and previous.store_id != store_id:
            logger.warning(
                "shard taken over from another store",
                extra={"shard": here.shard, "store": here.place, "previous": previous.place},
            )
        return True

    async def _loop(self, store: ShardWriter, stop: asyncio.Event, maintenance: asyncio.Task[None]) -> None:
        try:
            await self._write_until(store, stop, maintenance)
        except BaseException:  # a failure or cancellation: the last write's sync and acks end with the loop
            await self._commit.abandon()
            raise
        await self._commit.settle()

    async def _write_until(self, store: ShardWriter, stop: asyncio.Event, maintenance: asyncio.Task[None]) -> None:
        next_stats = time.monotonic() + self._stats_interval
        ahead: asyncio.Task[list[Msg]] | None = None
        while not stop.is_set():
            now = time.monotonic()
            if maintenance.done():
                maintenance.result()  # the upkeep failed: so does the service, as when the loop ran it
            if now >= next_stats:
                self._log_counts("persist progress")
                next_stats = now + self._stats_interval
            if self._consumer.catch_ups:
                await self._catch_up(store, stop)
            msgs = await (ahead if ahead is not None else self._collect(stop))
            ahead = None
            if msgs:  # the next write's messages are fetched while this one is written
                self._next_write = time.monotonic() + self._write_spacing_s
                ahead = asyncio.create_task(self._collect(stop), name="persist-fetch")
                try:
                    await self._persist(store, msgs, stop)
                except BaseException:
                    await cancel_and_wait(ahead)
                    raise
        if ahead is not None:  # stopped: what was fetched ahead is written and acked too
            msgs = await ahead
            if msgs:
                await self._persist(store, msgs, stop)

    async def _follow_listings(self, resolved: tuple[str, ...], stop: asyncio.Event) -> None:
        """On N shards with `ALL`: the shard's share of symbols listed while it runs joins its consumer.

        (A single shard consumes every trade subject and adopts a new symbol from the stream.)
        """
        if self._settings.shard_count == 1:
            return

        async def listed(new: tuple[str, ...]) -> None:
            share = tuple(symbol for symbol in self._settings.shard_share(new) if symbol not in self._owned)
            if not share:
                return
            self._symbols += share
            self._owned.update(share)
            write_manifest(self._settings.shard_dir, self._settings.shard, self._symbols)
            if self._importer is not None:
                for symbol in share:
                    await self._importer.add(symbol)
            transient = (NatsError, JetStreamError)
            grow = functools.partial(self._consumer.grow, share)
            await retry_until(stop, grow, transient=transient, what="listed symbols", timeout_s=RECORD_S)
            logger.info("listed symbols stored", extra={"added": ",".join(share[:50]), "symbols": len(self._symbols)})

        await follow_listings(self._settings, stop, resolved, listed)

    async def _catch_up(self, store: ShardWriter, stop: asyncio.Event) -> None:
        """One batch of the oldest catch-up consumer (listed symbols' earlier messages); dropped once it is done."""
        _, subscription = self._consumer.catch_ups[0]
        try:
            msgs = await subscription.fetch(self._batch, timeout=CATCH_UP_FETCH_S)
        except TimeoutError:
            msgs = []
        except NatsError as exc:
            logger.warning("catch-up fetch failed", extra={"error": repr(exc)})
            msgs = []
        if msgs:
            await self._persist(store, msgs, stop)
        else:
            await self._consumer.caught_up()

    async def _collect(self, stop: asyncio.Event) -> list[Msg]:
        """The messages of the next write: what arrived since the last one (up to `batch`), else the next to come.

        A fetch of a batch takes what is pending, gathering for at most `AVAILABLE_S` (nats-py's
        fetch keeps a pull open until its timeout once anything came); when nothing came, a
        fetch of one waits for the next trade, and a quiet moment's trade is written alone.
        """
        wait = self._next_write - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        subscription = self._consumer.subscription
        got: list[Msg] = []
        try:
            got = await subscription.fetch(self._batch, timeout=AVAILABLE_S)
        except TimeoutError:  # nats' own TimeoutError is a subclass; fetch raises both
            try:
                got = await subscription.fetch(1, timeout=self._fetch_timeout)
            except TimeoutError:
                if self._consumer.idle():
                    await self._ensure_consumer()
            except NatsError as exc:
                await self._fetch_failed(exc)
        except NatsError as exc:
            await self._fetch_failed(exc)
        if got:
            self._consumer.saw_messages()
        return got

    async def _fetch_failed(self, exc: NatsError) -> None:
        logger.warning("fetch failed", extra={"error": repr(exc)})
        await self._ensure_consumer()
        await asyncio.sleep(FETCH_RETRY_S)

    async def _ensure_consumer(self) -> None:
        try:
            await self._consumer.ensure()
        except (NatsError, TimeoutError) as exc:
            logger.warning("consumer check failed", extra={"error": repr(exc)})

    async def _persist(self, store: ShardWriter, msgs: list[Msg], stop: asyncio.Event) -> None:
        """Write one batch unsynced and announce it; its sync and acks go on beside the next write (`GroupCommit`)."""
        rows: list[tuple[str, TradeRow]] = []
        sources: list[Msg] = []
        for msg, row in zip(msgs, self._decoder.decode([msg.data for msg in msgs]), strict=True):
            symbol = self._symbol_of(msg.subject)
            if symbol is None:
                reason = f"subject {msg.subject[:200]!r} is not a trade subject of one instrument"
                await publish_deadletter(self._js, "persist", None, msg.data, reason, max_payload=self._nc.max_payload)
                self.deadlettered["unknown"] += 1
                continue
            if symbol not in self._owned and not await self._admit(symbol, msg):
                continue
            if isinstance(row, TradeFormatError):
                await publish_deadletter(
                    self._js, "persist", symbol, msg.data, str(row), max_payload=self._nc.max_payload
                )
                self.deadlettered[symbol] += 1
                continue
            rows.append((symbol, row))
            sources.append(msg)
        written = await self._commit.write(store, rows, msgs, stop)
        if written is None:
            return
        vetting, fresh = written
        await self._commit.announce(fresh)
        given_back = await self._refuse(vetting.refusals, rows, sources)
        refused = vetting.refused()
        stored = Counter(symbol for index, (symbol, _) in enumerate(rows) if index not in refused)
        await self._commit.make_durable(store, msgs, given_back, stored, len(rows) - len(refused) - fresh.count)

    async def _refuse(self, refusals: list[Refusal], rows: list[tuple[str, TradeRow]], sources: list[Msg]) -> set[int]:
        """Dead-letter what the batch's vetting refused, one log line for all; the messages to give back (by id).

        An implausible id is given back for another look until its `IMPLAUSIBLE_DELIVERIES`th
        delivery: the jump may be real and ingest's ledger not yet written.
        """
        given_back: set[int] = set()
        counts: Counter[str] = Counter()
        for refusal in refusals:
            symbol, msg = rows[refusal.index][0], sources[refusal.index]
            if refusal.kind == IMPLAUSIBLE_ID and msg.metadata.num_delivered < IMPLAUSIBLE_DELIVERIES:
                given_back.add(id(msg))
                self.held_implausible += 1
                counts["given_back"] += 1
                continue
            await publish_deadletter(
                self._js, "persist", symbol, msg.data, refusal.reason, max_payload=self._nc.max_payload, log=False
            )
            self.deadlettered[symbol] += 1
            self.refused[refusal.kind] += 1
            counts[refusal.kind] += 1
        if refusals:
            logger.warning("trades refused", extra={**counts, "first": refusals[0].reason[:200]})
        return given_back

    async def _admit(self, symbol: str, msg: Msg) -> bool:
        """Whether to store a trade of an instrument outside the shard's list; False once it is dead-lettered.

        Only a single shard with a market's `ALL` sees such subjects (it consumes all of them): an
        instrument of such a market listed after the start is adopted, i.e. rolled up, importable
        and in the manifest from its first trade on; one this shard does not own (another market,
        not taken whole) is dead-lettered, never stored as another market's trade.
        """
        if not self._settings.owns(symbol):
            reason = f"instrument {symbol} is not one of this shard's ({Settings.env_name('symbols')})"
            await publish_deadletter(self._js, "persist", symbol, msg.data, reason, max_payload=self._nc.max_payload)
            self.deadlettered[symbol] += 1
            return False
        self._symbols += (symbol,)
        self._owned.add(symbol)
        write_manifest(self._settings.shard_dir, self._settings.shard, self._symbols)
        if self._importer is not None:
            await self._importer.add(symbol)
        logger.info("new symbol on the stream", extra={"symbol": symbol, "symbols": len(self._symbols)})
        return True

    def _symbol_of(self, subject: str) -> str | None:
        """The instrument a trade subject names, None for a subject that names none (remembered either way)."""
        if subject in self._subject_symbols:
            return self._subject_symbols[subject]
        try:
            symbol: str | None = trade_instrument(subject)
        except SymbolError:
            symbol = None
        if len(self._subject_symbols) < MAX_SUBJECTS_REMEMBERED:
            self._subject_symbols[subject] = symbol
        return symbol

    async def _metrics_snapshot(self) -> ServiceSnapshot:
        """The logged counters as metrics; ready once the consumer is bound and NATS connected."""
        store, durable = self._store, self._consumer.durable
        lag: dict[str, int] = {}
        ack_pending: dict[str, int] = {}
        if store is not None and self._nc.is_connected:
            with contextlib.suppress(NatsError, TimeoutError):
                info = await self._js.consumer_info(TRADES_STREAM, durable, timeout=1.0)
                lag[durable], ack_pending[durable] = info.num_pending or 0, info.num_ack_pending or 0
        errors = {
            "store_error": self.store_errors,
            "deadletter": sum(self.deadlettered.values()),
            **self.refused,
            **self.replies.errors,
        }
        return ServiceSnapshot(
            ready=store is not None and self._nc.is_connected,
            reason="starting" if store is None else "" if self._nc.is_connected else "nats disconnected",
            trades_in={s: self.written[s] + self.deadlettered[s] for s in self._symbols},
            trades_out=dict(self.written),
            errors=errors,
            stream_lag=lag,
            ack_pending=ack_pending,
            windows_written=self.windows_written,
            windows_rolled_up=self.rolled_windows,
            segments={} if store is None else {s: store.segment_count(s) for s in self._symbols},
        )

    def _log_counts(self, event: str, *, force: bool = False) -> None:
        for symbol in self._symbols:
            counts: dict[str, object] = {
                "symbol": symbol,
                "trades": self.written[symbol],
                "deadlettered": self.deadlettered[symbol],
                "voids": self.voids[symbol],
            }
            self._progress.log(event, symbol, counts, force=force)
        totals: dict[str, object] = {
            "batches": self.batches,
            "already_stored": self.already_stored,
            "rolled_windows": self.rolled_windows,
            "store_errors": self.store_errors,
            **self.refused,
            "held_implausible": self.held_implausible,
            "reprovisioned": self.reprovisioned,
        }
        self._progress.log(event, "", totals, force=force)
