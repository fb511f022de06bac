"""Persist's live publisher: what each write newly stored, on `tape.live.*` once a second.

Before a write, `fresh` picks the trades the store does not hold yet (the same rule the
writer applies, read from its index, so it is exactly what the write adds); after the
write succeeded, `stored` queues them as one batch. Every `interval` the queued batches of
each symbol go out as one profile update (increments per window and price) and one bars
update (the complete 1 s bars of the seconds touched, read back from the store), split
over several messages only when one would exceed the server's max payload. Messages are
core NATS: nothing is kept for subscribers that are not there. Message models and the
join rules: `tradetape.api.live.messages`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter, defaultdict

import numpy as np
import orjson
from nats.aio.client import Client
from nats.errors import Error as NatsError

from tradetape.api.live.building import second_bars, split_batch, stored_batch
from tradetape.api.live.messages import LiveBarsUpdate, LiveBatch, LiveProfileUpdate
from tradetape.api.methods.bars import BarReply
from tradetape.bus.subjects import bars_subject, profile_subject
from tradetape.domain.aggregates import SECOND_MS
from tradetape.domain.columns import TradeColumns
from tradetape.ground.tasks import wait_event
from tradetape.runtime.logs import ProgressLog
from tradetape.store import ShardWriter, StoreError, window_start

logger = logging.getLogger(__name__)

PUBLISH_INTERVAL_S = 1.0
STATS_INTERVAL_S = 10.0
READ_GAP_MS = 60_000
LEVEL_BYTES = 80
"""JSON bytes of one price level (price, volume, buy volume, count) at the most, for splitting."""
BAR_BYTES = 256
"""JSON bytes of one 1 s bar at the most."""
PAYLOAD_SHARE = 0.5
"""Pack a message up to this share of the server's max payload (headers and JSON overhead left aside)."""


class LivePublisher:
    def __init__(self, nc: Client, *, interval: float = PUBLISH_INTERVAL_S) -> None:
        self._nc = nc
        self._interval = interval
        self.run_id = secrets.token_hex(6)
        self._seq: Counter[str] = Counter()
        self._batches: defaultdict[str, list[LiveBatch]] = defaultdict(list)
        self._seconds: defaultdict[str, set[int]] = defaultdict(set)
        self.published: Counter[str] = Counter()
        self._progress = ProgressLog(logger)
        self._next_stats = time.monotonic() + STATS_INTERVAL_S

    def stored(self, fresh: dict[str, TradeColumns]) -> None:
        """A write stored `fresh` (`ShardWriter.write_new`): queue it as one batch per symbol."""
        for symbol, trades in fresh.items():
            self._batches[symbol].append(stored_batch(trades))
            self._seconds[symbol].update(np.unique(window_start(trades.time)).tolist())

    async def run(self, store: ShardWriter, stop: asyncio.Event) -> None:
        """Publish what was queued every `interval` until `stop`, then once more."""
        while not stop.is_set():
            await wait_event(stop, self._interval)
            await self.flush(store)

    async def flush(self, store: ShardWriter) -> None:
        for symbol in list(self._batches):
            batches = self._batches.pop(symbol)
            seconds = sorted(self._seconds.pop(symbol, set()))
            try:
                bars = self._bars_of(store, symbol, seconds)
                await self._publish_profile(symbol, batches)
                await self._publish_bars(symbol, batches, bars)
            except (NatsError, StoreError, OSError) as exc:
                # Subscribers see the seq jump and take a new snapshot: nothing is lost to them.
                logger.warning("live update not published", extra={"symbol": symbol, "error": repr(exc)})
                self._seq[profile_subject(symbol)] += 1
                self._seq[bars_subject(symbol)] += 1
        if time.monotonic() >= self._next_stats:
            self._next_stats = time.monotonic() + STATS_INTERVAL_S
            for symbol, count in self.published.items():
                self._progress.log("live published", symbol, {"symbol": symbol, "messages": count})

    def _bars_of(self, store: ShardWriter, symbol: str, seconds: list[int]) -> list[BarReply]:
        """The complete 1 s bars of `seconds`, one read per stretch without a pause of a minute.

        Live writes touch a second or two; a backfill may touch seconds spread over hours,
        read a stretch at a time (each read decodes the segments at its edges).
        """
        bars: list[BarReply] = []
        if not seconds:
            return bars
        cuts = [0, *(i for i in range(1, len(seconds)) if seconds[i] - seconds[i - 1] > READ_GAP_MS), len(seconds)]
        for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
            trades = store.tape.trades(symbol, seconds[lo], seconds[hi - 1] + SECOND_MS)
            bars += second_bars(trades, seconds[lo:hi])
        return bars

    def _limit(self) -> int:
        return int(self._nc.max_payload * PAYLOAD_SHARE)

    async def _publish_profile(self, symbol: str, batches: list[LiveBatch]) -> None:
        """As few messages as fit; a batch too large for one goes in parts (`split_batch`)."""
        limit, chunk, size = self._limit(), list[LiveBatch](), 0
        parts = [part for batch in batches for part in split_batch(batch, limit // LEVEL_BYTES)]
        for batch in parts:
            batch_size = len(batch.model_dump_json())
            if chunk and size + batch_size > limit:
                await self._send(profile_subject(symbol), symbol, LiveProfileUpdate, batches=chunk)
                chunk, size = [], 0
            chunk.append(batch)
            size += batch_size
        if chunk:
            await self._send(profile_subject(symbol), symbol, LiveProfileUpdate, batches=chunk)

    async def _publish_bars(self, symbol: str, batches: list[LiveBatch], bars: list[BarReply]) -> None:
        """Every message carries all the batches' ids (subscribers decide on the last) and part of the bars."""
        ids_only = [LiveBatch(ids=batch.ids) for batch in batches]
        per_message = max(1, self._limit() // BAR_BYTES)
        for lo in range(0, max(len(bars), 1), per_message):
            part = bars[lo : lo + per_message]
            await self._send(bars_subject(symbol), symbol, LiveBarsUpdate, batches=ids_only, bars=part)

    async def _send(
        self, subject: str, symbol: str, model: type[LiveProfileUpdate] | type[LiveBarsUpdate], **fields: object
    ) -> None:
        self._seq[subject] += 1
        update = model.model_validate({"symbol": symbol, "run": self.run_id, "seq": self._seq[subject], **fields})
        await self._nc.publish(subject, orjson.dumps(update.model_dump(mode="json")))
        self.published[symbol] += 1
