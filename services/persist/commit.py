"""Persist's group commit: write a batch unsynced, announce it, then sync the log and ack beside the next write.

A write starts as soon as the previous one is in the store and holds whatever arrived
meanwhile (one trade at a quiet moment, thousands under load), so a trade waits for at most
one write, never for a fixed linger. A write goes into RocksDB's log unsynced and is
announced at once: a core NATS notice on `tape.persist.written.<shard>` tells the shard's
analytics workers to catch up, and its trades go out on `tape.live.trades.<SYMBOL>`
(`LivePublisher.announce`). Then, on a thread of its own and while the next write is fetched
and written, the log is synced and only then are the write's messages acked, all in one
buffer append (`BulkAcks`). A machine crash before that sync can take away trades already
shown; their messages were not acked, so they are delivered again and stored again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.errors import Error as JetStreamError
from nats.js.kv import KeyValue

from tradetape.bus.acks import BulkAcks
from tradetape.bus.ledger import LedgerFormatError, ledger_bucket, read_entry
from tradetape.domain.trade import TradeRow
from tradetape.ground.backoff import Backoff
from tradetape.ground.tasks import cancel_and_wait
from tradetape.services.persist.admission import Vetting, vet
from tradetape.services.persist.live import LivePublisher
from tradetape.services.persist.store_thread import StoreThread
from tradetape.store import ShardWriter, StoreError, Written, assemble_windows

logger = logging.getLogger(__name__)

STORE_RETRY_MAX_S = 30.0
LEDGER_READ_TIMEOUT_S = 1.0
IMPLAUSIBLE_RECHECK_S = 2.0
STEPS_KEPT = 64
SMALL_WRITE_ROWS = 256
"""A write of at most this many trades runs on the event loop when the store thread is idle (`StoreThread`):
about a millisecond of CPU; at 10,000 trades/s a write holds ~50."""


class GroupCommit:
    """The writes of one persist service, one at a time, each synced and acked while the next is written."""

    def __init__(
        self, nc: Client, store_thread: StoreThread, live: LivePublisher, written_subject: str, max_id_jump: int
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._store_thread = store_thread
        self._live = live
        self._written_subject = written_subject
        self._max_id_jump = max_id_jump
        self._acks = BulkAcks(nc)
        self._sync_thread = ThreadPoolExecutor(1, thread_name_prefix="persist-sync")
        """Syncs the log of the last write while the store thread writes the next."""
        self._syncing: asyncio.Task[None] | None = None
        """The last write's sync and acks, awaited before the next write's start (one in flight at most)."""
        self._reopen = False
        """A sync failed: the store is reopened before the next write."""
        self._writes = 0
        self._ledger: KeyValue | None = None
        self.steps: deque[tuple[str, int]] = deque(maxlen=STEPS_KEPT)
        """The last writes' steps in the order they happened, (step, write number): `written` (in the log,
        unsynced), `announced`, `durable`, `acked` (or `given_back` when the sync failed)."""
        self.written: Counter[str] = Counter()
        """Trades stored and acked, by symbol."""
        self.voids: Counter[str] = Counter()
        """Void rows stored (`tradetape.store.voids`): ids without a trade."""
        self.batches = 0
        self.already_stored = 0
        self.windows_written = 0
        self.store_errors = 0

    async def write(
        self, store: ShardWriter, rows: list[tuple[str, TradeRow]], msgs: list[Msg], stop: asyncio.Event
    ) -> tuple[Vetting, Written] | None:
        """The batch vetted and written unsynced, retried while RocksDB refuses; None if stopped before it succeeded.

        Returns the vetting and what the write added.
        """
        backoff = Backoff(0.5, STORE_RETRY_MAX_S)
        while True:
            try:
                if self._reopen:  # a sync failed: a fresh handle recovers what the log kept
                    await self.settle()
                    await self._store_thread.run(store.reopen)
                    self._reopen = False
                run = self._store_thread.run_small if len(rows) <= SMALL_WRITE_ROWS else self._store_thread.run
                vetting, fresh, windows = await run(self._vet_and_write, store, rows, None)
                if fresh is None:
                    ledger = await self._ledger_newest(vetting.unsure)
                    vetting, fresh, windows = await run(self._vet_and_write, store, rows, ledger)
                assert fresh is not None
                self.voids.update(fresh.voids)
                self.windows_written += windows
                self._writes += 1
                self.steps.append(("written", self._writes))
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
                await self.settle()  # never reopen beside a sync
                await self._store_thread.run(store.reopen)  # a refused handle stays refused, even once space is back
            except StoreError as exc:
                logger.error("store reopen failed, will retry", extra={"error": str(exc)})

    async def announce(self, written: Written) -> None:
        """The last write in the store (not yet synced): the notice for the shard's analytics workers, then the live
        trades (core NATS, no wait)."""
        if written.count:
            stored_at = int(time.time() * 1000)
            notice = orjson.dumps({"stored_at": stored_at, "added": written.count})
            try:
                await self._nc.publish(self._written_subject, notice)
            except NatsError as exc:  # analytics then catches up on its next notice or query
                logger.warning("write notice not published", extra={"error": repr(exc)})
            await self._live.announce(written, stored_at)
            self._live.stored(written)
        self.steps.append(("announced", self._writes))

    async def make_durable(
        self, store: ShardWriter, msgs: list[Msg], given_back: set[int], stored: Counter[str], old: int
    ) -> None:
        """Sync and ack the last write beside the next one (after the sync and acks of the one before)."""
        await self.settle()
        self._syncing = asyncio.create_task(
            self._sync_and_ack(store, self._writes, msgs, given_back, stored, old), name="persist-sync"
        )

    async def settle(self) -> None:
        """Wait for the last write's sync and acks (before the next write's, a reopen, or the end)."""
        syncing, self._syncing = self._syncing, None
        if syncing is not None:
            await syncing

    async def abandon(self) -> None:
        """The loop failed or was cancelled: the last write's sync and acks end with it."""
        await cancel_and_wait(self._syncing)

    def close(self) -> None:
        """Stop the sync thread (after `settle` or `abandon`)."""
        self._sync_thread.shutdown()

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
        await self._acks.ack_all([msg for msg in msgs if id(msg) not in given_back] if given_back else msgs)
        for msg in msgs:
            if id(msg) in given_back:
                await msg.nak(delay=IMPLAUSIBLE_RECHECK_S)
        self.steps.append(("acked", number))
        self.written.update(stored)
        self.already_stored += old
        self.batches += 1

    def _vet_and_write(
        self, store: ShardWriter, rows: list[tuple[str, TradeRow]], ledger: dict[str, int | None] | None
    ) -> tuple[Vetting, Written | None, int]:
        """Where the store changes (`StoreThread`): vet the batch and write what it admits (nothing while it needs
        ingest's ledger)."""
        vetting = vet(store, rows, self._max_id_jump, ledger)
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
