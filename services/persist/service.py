"""The persist service: JetStream trades → 1-second windows → segments in the shard's RocksDB.

start (resolve the symbols, lock the shard, open the store, bind the consumer) → run
(fetch what arrived, validate, write it durably, announce it, ack it; roll up closed
windows, apply retention) → drain (the batch in hand is written and acked before the loop ends) → stop
(close the store, release the shard). A crash at any point loses nothing (unacked
messages are redelivered) and duplicates nothing (the store drops agg ids it holds).

The shard's symbols are its share of `TRADETAPE_SYMBOLS`, or with `ALL` of the exchange's
TRADING symbols, asked at start (`tradetape.binance.symbols`). `ALL` on a single shard
consumes every trade subject, so a symbol first seen on the stream (listed after the start)
is adopted: stored, rolled up, importable and in the manifest from its first trade. On N
shards the exchange is asked again every `symbols_refresh_s`: the shard's share of what was
listed meanwhile joins its consumer's filter, and a catch-up consumer brings the listed
symbols' messages from before (`PersistConsumer.grow`).

Group commit, visible before durable: a write starts as soon as the previous one is in the
store and holds whatever arrived meanwhile (one trade at a quiet moment, thousands under
load), so a trade waits for at most one write, never for a fixed linger. A write goes into
RocksDB's log unsynced and is announced at once: a core NATS notice on
`tape.persist.written.<shard>` tells the shard's analytics workers to catch up, and its
trades go out on `tape.live.trades.<SYMBOL>` (`LivePublisher.announce`). Then, on a thread
of its own and while the next write is fetched and written, the log is synced and only
then are the write's messages acked. A machine crash before that sync can take away trades
already shown; their messages were not acked, so they are delivered again and stored again.

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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.errors import Error as JetStreamError
from nats.js.kv import KeyValue

from tradetape.binance.aggtrade import TradeFormatError
from tradetape.binance.symbols import follow_listings, resolve_symbols
from tradetape.bus.codec import decode_trade
from tradetape.bus.deadletter import publish_deadletter
from tradetape.bus.ledger import LedgerFormatError, ledger_bucket, read_entry
from tradetape.bus.replies import ReplyGuard
from tradetape.bus.shard_stores import ShardStore, record_shard_store
from tradetape.bus.subjects import TRADES_STREAM, trade_instrument, written_subject
from tradetape.domain.symbols import SymbolError
from tradetape.domain.trade import TradeRow
from tradetape.ground.backoff import Backoff, retry_until
from tradetape.ground.tasks import cancel_and_wait
from tradetape.runtime.logs import ProgressLog
from tradetape.runtime.metrics import ServiceMetrics, ServiceSnapshot
from tradetape.services.persist.admission import IMPLAUSIBLE_ID, Refusal, Vetting, vet
from tradetape.services.persist.consumer import MaxDeliveries, PersistConsumer
from tradetape.services.persist.importer import BulkImporter
from tradetape.services.persist.live import LivePublisher
from tradetape.settings import Settings
from tradetape.store import ShardWriter, StoreError, Written, assemble_windows, write_manifest

logger = logging.getLogger(__name__)
T = TypeVar("T")

FETCH_BATCH = 5000
FETCH_TIMEOUT_S = 0.2
"""How long a fetch waits for the next trade when none is pending (then the consumer's health is looked at)."""
AVAILABLE_S = 0.003
"""How long a fetch of what is pending waits for the server's answer (and, when nothing is, for a trade)."""
FETCH_RETRY_S = 0.5
CATCH_UP_FETCH_S = 0.5
STATS_INTERVAL_S = 10.0
ROLLUP_INTERVAL_S = 10.0
RETENTION_INTERVAL_S = 3600.0
STORE_RETRY_MAX_S = 30.0
LEDGER_READ_TIMEOUT_S = 1.0
RECORD_S = 2.0
MAX_SUBJECTS_REMEMBERED = 100_000
"""Trade subjects whose instrument is remembered (far above every instrument of every market); more are parsed."""
"""The longest one try at recording the shard's store may take (a cluster electing its leaders answers late)."""
IMPLAUSIBLE_DELIVERIES = 3
"""An implausible id is delivered this often before it is dead-lettered: ingest writes its ledger every second,
so a real jump ingest believed (after asking REST) shows there by the next delivery."""
IMPLAUSIBLE_RECHECK_S = 2.0
STEPS_KEPT = 64
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
        # Roll up at least four times per roll-up age, so windows never pile up past it.
        self._rollup_interval = min(rollup_interval, settings.rollup_age_s / 4)
        self._symbols: tuple[str, ...] = ()
        """The shard's symbols, known once `run` has resolved them."""
        self._owned: set[str] = set()
        self._subject_symbols: dict[str, str | None] = {}
        self.written: Counter[str] = Counter()
        self.deadlettered: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        """Trades refused after they were read, by kind (`conflict`, `implausible_id`); each is dead-lettered."""
        self.held_implausible = 0
        """Deliveries of implausible ids given back to be checked again against ingest's ledger."""
        self.voids: Counter[str] = Counter()
        """Void rows stored (`tradetape.store.voids`): ids without a trade."""
        self.batches = 0
        self.already_stored = 0
        self.rolled_windows = 0
        self.store_errors = 0
        self._consumer = PersistConsumer(settings, self._js)
        self.live = LivePublisher(nc)
        self._written_subject = written_subject(settings.shard)
        self._progress = ProgressLog(logger)
        self.windows_written = 0
        self._store: ShardWriter | None = None
        self._importer: BulkImporter | None = None
        self._store_thread = ThreadPoolExecutor(1, thread_name_prefix="persist-store")
        """The one thread that changes the store: live writes, roll-ups, retention and bulk imports, one at a time."""
        self._sync_thread = ThreadPoolExecutor(1, thread_name_prefix="persist-sync")
        """Syncs the log of the last write while the store thread writes the next."""
        self._syncing: asyncio.Task[None] | None = None
        """The last write's sync and acks, awaited before the next write's start (one in flight at most)."""
        self._reopen = False
        """A sync failed: the store is reopened before the next write."""
        self._writes = 0
        self.steps: deque[tuple[str, int]] = deque(maxlen=STEPS_KEPT)
        """The last writes' steps in the order they happened, (step, write number): `written` (in the log,
        unsynced), `announced`, `durable`, `acked` (or `given_back` when the sync failed)."""
        self._ledger: KeyValue | None = None
        self.metrics = ServiceMetrics("persist", self._metrics_snapshot)

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
            try:
                await self._loop(store, stop)
            finally:
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
            await asyncio.to_thread(self._sync_thread.shutdown)
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

    async def _loop(self, store: ShardWriter, stop: asyncio.Event) -> None:
        try:
            await self._write_until(store, stop)
        except BaseException:  # a failure or cancellation: the last write's sync and acks end with the loop
            await cancel_and_wait(self._syncing)
            raise
        await self._settle()

    async def _write_until(self, store: ShardWriter, stop: asyncio.Event) -> None:
        now = time.monotonic()
        next_stats = now + self._stats_interval
        next_rollup = now
        next_retention = now
        ahead: asyncio.Task[list[Msg]] | None = None
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_rollup:
                self.rolled_windows += await self._in_store(self._roll_up, store)
                next_rollup = now + self._rollup_interval
            if now >= next_retention:
                await self._in_store(self._apply_retention, store)
                next_retention = now + RETENTION_INTERVAL_S
            if now >= next_stats:
                self._log_counts("persist progress")
                next_stats = now + self._stats_interval
            if self._consumer.catch_ups:
                await self._catch_up(store, stop)
            msgs = await (ahead if ahead is not None else self._collect(stop))
            ahead = None
            if msgs:  # the next write's messages are fetched while this one is written
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
        """Write one batch unsynced and announce it; its sync and acks go on beside the next write (`_sync_and_ack`)."""
        rows: list[tuple[str, TradeRow]] = []
        sources: list[Msg] = []
        for msg in msgs:
            symbol = self._symbol_of(msg.subject)
            if symbol is None:
                reason = f"subject {msg.subject[:200]!r} is not a trade subject of one instrument"
                await publish_deadletter(self._js, "persist", None, msg.data, reason, max_payload=self._nc.max_payload)
                self.deadlettered["unknown"] += 1
                continue
            if symbol not in self._owned and not await self._admit(symbol, msg):
                continue
            try:
                rows.append((symbol, decode_trade(msg.data)))
                sources.append(msg)
            except TradeFormatError as exc:
                await publish_deadletter(
                    self._js, "persist", symbol, msg.data, str(exc), max_payload=self._nc.max_payload
                )
                self.deadlettered[symbol] += 1
        written = await self._write(store, rows, msgs, stop)
        if written is None:
            return
        self._writes += 1
        number = self._writes
        self.steps.append(("written", number))
        vetting, fresh = written
        if fresh.count:
            await self._announce(fresh)
        self.steps.append(("announced", number))
        given_back = await self._refuse(vetting.refusals, rows, sources)
        refused = vetting.refused()
        stored = Counter(symbol for index, (symbol, _) in enumerate(rows) if index not in refused)
        await self._settle()
        self._syncing = asyncio.create_task(
            self._sync_and_ack(store, number, msgs, given_back, stored, len(rows) - len(refused) - fresh.count),
            name="persist-sync",
        )

    async def _settle(self) -> None:
        """Wait for the last write's sync and acks (before the next write's, a reopen, or the end)."""
        syncing, self._syncing = self._syncing, None
        if syncing is not None:
            await syncing

    async def _sync_and_ack(
        self, store: ShardWriter, number: int, msgs: list[Msg], given_back: set[int], stored: Counter[str], old: int
    ) -> None:
        """Make write `number` durable (the log synced), then ack its messages (an implausible id is given back).

        If the sync fails, every message is given back at once and the store is reopened before the next write:
        what the log kept is recovered and the redelivered trades are dropped as held, what it lost is stored again.
        """
        try:
            await asyncio.get_running_loop().run_in_executor(self._sync_thread, store.sync_log)
        except StoreError as exc:
            self.store_errors += 1
            self._reopen = True
            logger.error("store sync failed, batch given back", extra={"error": str(exc), "held": len(msgs)})
            for msg in msgs:
                with contextlib.suppress(NatsError):
                    await msg.nak()
            self.steps.append(("given_back", number))
            return
        self.steps.append(("durable", number))
        for msg in msgs:
            if id(msg) in given_back:
                await msg.nak(delay=IMPLAUSIBLE_RECHECK_S)
            else:
                await msg.ack()
        self.steps.append(("acked", number))
        self.written.update(stored)
        self.already_stored += old
        self.batches += 1

    async def _announce(self, written: Written) -> None:
        """A write in the store (not yet synced): the notice for the shard's analytics workers, then the live trades
        (core NATS, no wait)."""
        stored_at = int(time.time() * 1000)
        notice = orjson.dumps({"stored_at": stored_at, "added": written.count})
        try:
            await self._nc.publish(self._written_subject, notice)
        except NatsError as exc:  # analytics then catches up on its next notice or query
            logger.warning("write notice not published", extra={"error": repr(exc)})
        await self.live.announce(written, stored_at)
        self.live.stored(written)

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

    async def _in_store(self, call: Callable[..., T], *args: object) -> T:
        """`call(*args)` on the store thread (never beside another change of the store)."""
        return await asyncio.get_running_loop().run_in_executor(self._store_thread, call, *args)

    async def _write(
        self, store: ShardWriter, rows: list[tuple[str, TradeRow]], msgs: list[Msg], stop: asyncio.Event
    ) -> tuple[Vetting, Written] | None:
        """The batch vetted and written, retried while RocksDB refuses; None if stopped before it succeeded.

        Returns the vetting and what the write added.
        """
        backoff = Backoff(0.5, STORE_RETRY_MAX_S)
        while True:
            try:
                if self._reopen:  # a sync failed: a fresh handle recovers what the log kept
                    await self._settle()
                    await self._in_store(store.reopen)
                    self._reopen = False
                vetting, fresh, windows = await self._in_store(self._vet_and_write, store, rows, None)
                if fresh is None:
                    ledger = await self._ledger_newest(vetting.unsure)
                    vetting, fresh, windows = await self._in_store(self._vet_and_write, store, rows, ledger)
                assert fresh is not None
                self.voids.update(fresh.voids)
                self.windows_written += windows
                return vetting, fresh
            except StoreError as exc:
                self.store_errors += 1
                logger.error("store write failed, batch held unacked", extra={"error": str(exc), "held": len(msgs)})
            for msg in msgs:  # keep the batch ours while we retry: no redelivery, no delivery counted
                with contextlib.suppress(NatsError):
                    await msg.in_progress()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff.next_delay())
            if stop.is_set():
                logger.warning("stopped with an unwritten batch, delivered again later", extra={"held": len(msgs)})
                return None
            try:
                await self._settle()  # never reopen beside a sync
                await self._in_store(store.reopen)  # a refused handle stays refused, even once space is back
            except StoreError as exc:
                logger.error("store reopen failed, will retry", extra={"error": str(exc)})

    def _vet_and_write(
        self, store: ShardWriter, rows: list[tuple[str, TradeRow]], ledger: dict[str, int | None] | None
    ) -> tuple[Vetting, Written | None, int]:
        """On the store thread: vet the batch and write what it admits (nothing while it needs ingest's ledger)."""
        vetting = vet(store, rows, self._settings.ingest_max_id_jump, ledger)
        if vetting.unsure and ledger is None:
            return vetting, None, 0
        refused = vetting.refused()
        windows = assemble_windows(row for index, row in enumerate(rows) if index not in refused)
        return vetting, store.write_new(windows, sync=False), len(windows)

    async def _ledger_newest(self, symbols: set[str]) -> dict[str, int | None]:
        """Per symbol the highest agg id ingest's ledger knows (confirmed, or asked for by an open gap).

        Asked only for a batch with an id beyond the newest stored; a ledger that cannot be read
        in time knows nothing (those ids are then given back and asked about again).
        """
        known: dict[str, int | None] = {}
        try:
            async with asyncio.timeout(LEDGER_READ_TIMEOUT_S):
                if self._ledger is None:
                    self._ledger = await ledger_bucket(self._js)
                for symbol in sorted(symbols):
                    entry = None if self._ledger is None else await read_entry(self._ledger, symbol)
                    known[symbol] = None if entry is None else max([entry.last_id, *(g.to_id for g in entry.gaps)])
        except (NatsError, JetStreamError, TimeoutError, LedgerFormatError) as exc:
            extra = {"symbols": ",".join(sorted(symbols)), "error": repr(exc)}
            logger.warning("ingest ledger not readable", extra=extra)
        return known

    def _roll_up(self, store: ShardWriter) -> int:
        """On the store thread: roll up every symbol's closed windows; how many were rolled up."""
        rolled = 0
        before = int(time.time() * 1000 - self._settings.rollup_age_s * 1000)
        for symbol in self._symbols:
            try:
                rolled += store.roll_up(symbol, before)
            except StoreError as exc:
                self.store_errors += 1
                logger.error("roll-up failed, will retry", extra={"symbol": symbol, "error": str(exc)})
        return rolled

    def _apply_retention(self, store: ShardWriter) -> None:
        """On the store thread: drop what is older than the retention."""
        cutoff = int(time.time() * 1000 - self._settings.retention_days * 86_400_000)
        for symbol in self._symbols:
            try:
                store.delete_before(symbol, cutoff)
            except StoreError as exc:
                self.store_errors += 1
                logger.error("retention failed, will retry", extra={"symbol": symbol, "error": str(exc)})

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
