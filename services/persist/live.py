"""Persist's live publisher: what each write newly stored, on `tape.live.*`, built from the write itself.

As soon as a write is in the store (before its log is synced), `announce` sends its trades
and voids on `tape.live.trades.<SYMBOL>` (one message per symbol, in parts only when one
would exceed the server's max payload), and `stored` queues the write for the profile and bars updates: one batch per
symbol, and the complete 1-second windows the write touched as it merged them
(`tradetape.store.Written`). Every `interval` the queued batches of each symbol go out as one
profile update (increments per window and price) and one bars update (the complete 1 s bars
of the seconds touched), split over several messages only when one would exceed the max
payload. Nothing is read back from the store. Messages are core NATS: nothing is kept for
subscribers that are not there. Message models and the join rules:
`tradetape.api.live.messages`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter, defaultdict

import orjson
from nats.aio.client import Client
from nats.errors import Error as NatsError

from tradetape.api.live.building import second_bars, split_batch, stored_batches, trades_parts
from tradetape.api.live.messages import LiveBarsUpdate, LiveBatch, LiveProfileUpdate
from tradetape.api.methods.bars import BarReply
from tradetape.bus.subjects import bars_subject, live_trades_subject, profile_subject
from tradetape.domain.columns import TradeColumns
from tradetape.ground.tasks import wait_event
from tradetape.runtime.logs import ProgressLog
from tradetape.store import Written

logger = logging.getLogger(__name__)

PUBLISH_INTERVAL_S = 1.0
STATS_INTERVAL_S = 10.0
LEVEL_BYTES = 80
"""JSON bytes of one price level (price, volume, buy volume, count) at the most, for splitting."""
BAR_BYTES = 256
"""JSON bytes of one 1 s bar at the most."""
TRADE_BYTES = 192
"""JSON bytes of one trade of the live feed at the most (three 19-digit ids, two 29-character decimals, a time)."""
PAYLOAD_SHARE = 0.5
"""Pack a message up to this share of the server's max payload (headers and JSON overhead left aside)."""


class LivePublisher:
    def __init__(self, nc: Client, *, interval: float = PUBLISH_INTERVAL_S) -> None:
        self._nc = nc
        self._interval = interval
        self.run_id = secrets.token_hex(6)
        self._seq: Counter[str] = Counter()
        self._written: defaultdict[str, list[TradeColumns]] = defaultdict(list)
        """Per symbol, the trades of each write since the last flush (made into profile batches there)."""
        self._windows: defaultdict[str, dict[int, TradeColumns]] = defaultdict(dict)
        """Per symbol, every trade stored in each second touched since the last flush, as the latest write left it."""
        self.published: Counter[str] = Counter()
        self._progress = ProgressLog(logger)
        self._next_stats = time.monotonic() + STATS_INTERVAL_S

    def stored(self, written: Written) -> None:
        """A write stored what `written` says (`ShardWriter.write_new`): queue it for the next profile and bars."""
        for symbol, trades in written.trades.items():
            self._written[symbol].append(trades)
            self._windows[symbol].update(written.seconds.get(symbol, {}))

    async def announce(self, written: Written, stored_at: int) -> None:
        """Send each symbol's newly stored trades and voids of one write on its live trades subject."""
        max_rows = self._limit() // TRADE_BYTES
        for symbol in sorted({*written.trades, *written.voided}):
            subject = live_trades_subject(symbol)
            trades = written.trades.get(symbol, TradeColumns.empty())
            voids = written.voided.get(symbol, TradeColumns.empty())
            parts = trades_parts(trades, voids, max_rows)
            for number, (rows, void_ids) in enumerate(parts, 1):
                self._seq[subject] += 1
                message = {
                    "symbol": symbol,
                    "run": self.run_id,
                    "seq": self._seq[subject],
                    "stored_at": stored_at,
                    "part": number,
                    "parts": len(parts),
                    "trades": rows,
                    "voids": void_ids,
                }
                try:
                    await self._nc.publish(subject, orjson.dumps(message))
                except NatsError as exc:
                    # The seq moved on: subscribers see the jump and read what they missed.
                    logger.warning("live trades not published", extra={"symbol": symbol, "error": repr(exc)})
                    continue
                self.published[symbol] += 1

    async def run(self, stop: asyncio.Event) -> None:
        """Publish what was queued every `interval` until `stop`, then once more."""
        while not stop.is_set():
            await wait_event(stop, self._interval)
            await self.flush()

    async def flush(self) -> None:
        for symbol in list(self._written):
            batches = stored_batches(self._written.pop(symbol))
            windows = self._windows.pop(symbol, {})
            try:
                seconds = sorted(windows)
                bars = second_bars(TradeColumns.concat([windows[s] for s in seconds]), seconds) if seconds else []
                await self._publish_profile(symbol, batches)
                await self._publish_bars(symbol, batches, bars)
            except (NatsError, OSError) as exc:
                # Subscribers see the seq jump and take a new snapshot: nothing is lost to them.
                logger.warning("live update not published", extra={"symbol": symbol, "error": repr(exc)})
                self._seq[profile_subject(symbol)] += 1
                self._seq[bars_subject(symbol)] += 1
        if time.monotonic() >= self._next_stats:
            self._next_stats = time.monotonic() + STATS_INTERVAL_S
            for symbol, count in self.published.items():
                self._progress.log("live published", symbol, {"symbol": symbol, "messages": count})

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

