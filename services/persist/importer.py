"""Persist's bulk-import endpoint: history batches over NATS into the shard's store.

The shard's writer is this process, so imports and repairs that run while persist runs
send their batches here (`tradetape.history.bulk`): one request subject per symbol the
shard owns. Each batch is read before it is trusted (`decode_batch`: every count and width
checked against its bytes, at most `BATCH_TRADES` trades), checked whole with the same
column rules as a dump (one invalid row refuses the batch, with the reason), then written
by `ShardWriter.import_trades` in one atomic write straight into hour segments. All of it
runs on persist's store thread, the one thread that changes the store: the event loop
keeps consuming live trades meanwhile, and a batch is never written beside a live write.
At most `PENDING_BATCHES` full batches' bytes of a symbol wait in memory (and at most
`PENDING_MESSAGES` requests); NATS drops the ones beyond (the importer's request then times
out), so a flood of batches cannot grow persist, while small hostile requests still reach
the reply guard and are counted. A batch
whose reply subject is not an inbox is dropped unread (`tradetape.bus.replies`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError

from tradetape.binance.aggtrade import first_invalid
from tradetape.bus.replies import ReplyGuard
from tradetape.bus.subjects import import_subject
from tradetape.domain.column_checks import first_not_ascending
from tradetape.history.bulk import BatchFormatError, ImportReply, decode_batch
from tradetape.services.persist.store_thread import StoreThread
from tradetape.store import ImportConflictError, ShardWriter, StoreError

logger = logging.getLogger(__name__)

PENDING_BATCHES = 2
PENDING_MESSAGES = 64


class BulkImporter:
    def __init__(
        self,
        nc: Client,
        store: ShardWriter,
        symbols: tuple[str, ...],
        rollup_age_s: float,
        store_thread: StoreThread,
        replies: ReplyGuard,
        notice_subject: str,
    ) -> None:
        """`notice_subject`: where a durable write is announced (`tradetape.bus.subjects.written_subject`)."""
        self._nc = nc
        self._notice_subject = notice_subject
        self._replies = replies
        self._store = store
        self._store_thread = store_thread
        self._symbols = symbols
        self._rollup_age_ms = int(rollup_age_s * 1000)
        self._subscriptions: list[Subscription] = []
        self.imported = 0
        self.duplicates = 0
        self.batches = 0
        self.refused = 0

    async def start(self) -> None:
        for symbol in self._symbols:
            await self.add(symbol)

    async def add(self, symbol: str) -> None:
        """Take imports for one more symbol (one persist adopted after its start)."""
        subscription = await self._nc.subscribe(
            import_subject(symbol),
            cb=self._replies.guarded(functools.partial(self._handle, symbol)),
            pending_msgs_limit=PENDING_MESSAGES,
            pending_bytes_limit=PENDING_BATCHES * self._nc.max_payload,
        )
        self._subscriptions.append(subscription)

    async def stop(self) -> None:
        """Unsubscribe; safe twice."""
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            if not self._nc.is_closed:
                await subscription.unsubscribe()

    async def _handle(self, symbol: str, msg: Msg) -> None:
        """One batch of `symbol` (its subscription's), its reply subject checked by the guard before any write."""
        reply = await self._store_thread.run(self._import, symbol, msg.data)
        if reply.added:  # analytics catches up on the notice, as after a live write
            with contextlib.suppress(NatsError):
                await self._nc.publish(self._notice_subject, orjson.dumps({"added": reply.added}))
        await msg.respond(reply.encode())

    def _import(self, symbol: str, data: bytes) -> ImportReply:
        """One batch, on the store thread: read, checked whole, written; the reply says what happened."""
        try:
            source, trades = decode_batch(data)
        except BatchFormatError as exc:
            return self._refuse(symbol, "", len(data), str(exc))
        bad = first_invalid(trades)
        step = first_not_ascending(trades.agg_id, None)
        if bad is not None or step is not None:
            index, reason = bad if bad is not None else (step or 0, "agg ids do not ascend")
            return self._refuse(symbol, source, len(data), f"agg id {int(trades.agg_id[index])}: {reason}")
        try:
            counts = self._store.import_trades(
                symbol, trades, roll_up_before_ms=int(time.time() * 1000) - self._rollup_age_ms
            )
        except ImportConflictError as exc:
            logger.warning("import refused", extra={"symbol": symbol, "source": source, "error": str(exc)})
            return ImportReply(error_code="conflict", error=str(exc), agg_id=exc.agg_id)
        except StoreError as exc:
            logger.error("import write failed", extra={"symbol": symbol, "source": source, "error": str(exc)})
            return ImportReply(error_code="store", error=str(exc))
        self.batches += 1
        self.imported += counts.added
        self.duplicates += counts.duplicates
        logger.info(
            "import batch",
            extra={"symbol": symbol, "source": source, "added": counts.added, "duplicates": counts.duplicates},
        )
        return ImportReply(added=counts.added, duplicates=counts.duplicates)

    def _refuse(self, symbol: str, source: str, size: int, reason: str) -> ImportReply:
        self.refused += 1
        extra = {"symbol": symbol, "source": source[:100], "bytes": size, "error": reason[:200]}
        logger.warning("import batch refused", extra=extra)
        return ImportReply(error_code="invalid", error=reason)
