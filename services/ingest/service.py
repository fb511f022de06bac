"""The ingest service: Binance aggTrade streams → JetStream, every id once, gaps tracked until filled.

Start: provision the streams and the ledger bucket, resolve the instruments (a list, or
`ALL` from exchangeInfo), restore each instrument's tape from its ledger entry (the
watermark and open gaps; the stream's last trade for one the ledger does not know yet),
and give each market a lane (`lanes`): spot, USD-M and COIN-M instruments each get their
market's connections, REST client, weight budget and gap filler. Run, in one task group:
every lane's feeds (≤ N streams a connection) and gap filler, the publisher, the ledger
writer (once a second, changed instruments only) and the summary log; a stats request on
`tape.ingest.stats` answers the counters. Stop: close the feeds, confirm what is in
flight (bounded), write the ledger a last time. A NATS connection closed for good ends
`run` with `NatsClosedError`, so the process exits and is restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from tradetape.binance.aggtrade import TradeFormatError
from tradetape.binance.frames import AggTradeFrame, ControlFrame, FrameError, ReplyFrame, parse_frame
from tradetape.binance.markets import market_api
from tradetape.binance.rest import RestClient, RestTrade
from tradetape.binance.symbols import follow_listings, resolve_symbols
from tradetape.bus.codec import decode_trade, encode_trade
from tradetape.bus.deadletter import deadletter_message
from tradetape.bus.ledger import LedgerEntry, LedgerFormatError, ledger_bucket, read_entry, write_entry
from tradetape.bus.provision import ensure_streams
from tradetape.bus.publish.publisher import NatsClosedError, Publisher, raise_if_closed
from tradetape.bus.replies import ReplyGuard
from tradetape.bus.subjects import INGEST_STATS_SUBJECT, TRADES_STREAM, deadletter_subject, trade_subject
from tradetape.domain.instruments import Market, split_instrument
from tradetape.ground.tasks import cancel_and_wait
from tradetape.runtime.metrics import ServiceMetrics
from tradetape.services.ingest.arrival import ArrivalLags
from tradetape.services.ingest.feed import AttemptLimiter, Feed, FeedOptions, split_symbols
from tradetape.services.ingest.filler import GapFiller
from tradetape.services.ingest.lanes import MarketLane, subscribe_interval_s
from tradetape.services.ingest.stats import StatsBook
from tradetape.services.ingest.tailprobe import TailSchedule, probe_interval_s
from tradetape.services.ingest.tape import SymbolTape, Verdict
from tradetape.settings import Settings

logger = logging.getLogger(__name__)

PUBLISH_WINDOW = 2000
DRAIN_TIMEOUT_S = 10.0
UNSUBSCRIBE_TIMEOUT_S = 2.0
LEDGER_INTERVAL_S = 1.0
LEDGER_PUT_CHUNK = 200


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class IngestService:
    def __init__(self, settings: Settings, nc: Client) -> None:
        self._settings = settings
        self._nc = nc
        self.replies = ReplyGuard("ingest")
        """Checks the reply subjects of `tape.ingest.stats` and of the `$SRV` verbs (`announce`)."""
        self._js: JetStreamContext = nc.jetstream()
        self._retention_ms = int(settings.retention_days * 86_400_000)
        self.tapes: dict[str, SymbolTape] = {}
        """Every instrument's tape, by its name (``BTCUSDT``, ``um:BTCUSDT``)."""
        self.lanes: dict[Market, MarketLane] = {}
        """One per market ingested, built at start."""
        self._spot_rest = RestClient.of(settings, Market.SPOT)
        """Spot's client: asks exchangeInfo for `ALL`, then serves spot's lane (one budget)."""
        self.unknown_deadletters: Counter[str] = Counter()
        self.publisher = Publisher(
            nc,
            on_ack=self._on_ack,
            on_drop=self._on_drop,
            window=PUBLISH_WINDOW,
            buffer_max=settings.ingest_buffer_trades,
            batches=settings.ingest_fast_batches,
        )
        self._limiter = AttemptLimiter()
        """Connection attempts of every feed, those of instruments listed later too, within Binance's limit."""
        self._written: dict[str, tuple[int, int, tuple[Any, ...]]] = {}
        self.arrival = ArrivalLags()
        """The exchange → ingest hop of new trades (receipt − T, receipt − E), summarised in each progress line."""
        self.stats = StatsBook(self, settings.ingest_tail_probe_after_s)
        self.metrics = ServiceMetrics("ingest", self.stats.metrics)

    @property
    def feeds(self) -> list[Feed]:
        """Every lane's connections."""
        return [feed for lane in self.lanes.values() for feed in lane.feeds]

    @property
    def connected(self) -> bool:
        return self._nc.is_connected

    async def run(self, stop: asyncio.Event) -> None:
        """Ingest until `stop`; a NATS connection closed for good raises `NatsClosedError`, at any stage."""
        try:
            kv = await self._start(stop)
            if kv is None:
                return
            stats_sub = await self._nc.subscribe(INGEST_STATS_SUBJECT, cb=self.replies.guarded(self._answer_stats))
        except NatsError:
            raise_if_closed(self._nc)
            raise
        try:
            await self._run_tasks(kv, stop)
        except BaseExceptionGroup as group:
            closed = group.subgroup(NatsClosedError)
            if closed is None:
                raise
            error: BaseException = closed
            while isinstance(error, BaseExceptionGroup):
                error = error.exceptions[0]
            logger.error("nats connection closed for good, ingest exits", extra={"error": str(error)})
            raise error from None
        finally:
            with contextlib.suppress(NatsError, TimeoutError):
                await asyncio.wait_for(stats_sub.unsubscribe(), UNSUBSCRIBE_TIMEOUT_S)
            self.stats.log_summary("ingest stopped", force=True)

    async def _start(self, stop: asyncio.Event) -> KeyValue | None:
        """Provision, resolve the symbols, restore the tapes and build the feeds; None if stopped first."""
        await ensure_streams(self._js, self._settings)
        kv = await ledger_bucket(self._js, create=True, replicas=self._settings.stream_replicas)
        assert kv is not None
        symbols = await self._resolve_symbols(stop)
        if not symbols:
            return None
        await self._restore(kv, symbols)
        self._build_lanes(symbols)
        logger.info(
            "ingest started",
            extra={
                "symbols": len(symbols),
                "markets": ",".join(self.lanes),
                "connections": len(self.feeds),
                "resumed": sum(1 for t in self.tapes.values() if t.watermark is not None),
                "open_gaps": sum(len(t.gaps) for t in self.tapes.values()),
            },
        )
        return kv

    async def _run_tasks(self, kv: KeyValue, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as group:
            publisher = group.create_task(self.publisher.run(), name="ingest-publisher")
            fillers = [
                group.create_task(lane.filler.run(), name=f"ingest-filler-{market}")
                for market, lane in self.lanes.items()
            ]
            ledger = group.create_task(self._ledger_loop(kv), name="ingest-ledger")
            stats = group.create_task(self.stats.log_loop(self._settings.ingest_stats_interval_s), name="ingest-stats")
            feeds = [group.create_task(feed.run(stop), name=f"ingest-feed-{feed.name}") for feed in self.feeds]
            listings = group.create_task(self._follow_listings(kv, stop, group, feeds), name="ingest-listings")
            await stop.wait()
            await cancel_and_wait(listings)
            await asyncio.gather(*feeds)
            for filler in fillers:
                await cancel_and_wait(filler)
            left = await self.publisher.drain(DRAIN_TIMEOUT_S)
            if left:
                logger.error("publishes unconfirmed at shutdown, left to the ledger", extra={"pending": left})
            await cancel_and_wait(ledger)
            await self._write_ledger(kv)
            for task in (stats, publisher):
                await cancel_and_wait(task)

    async def _resolve_symbols(self, stop: asyncio.Event) -> tuple[str, ...]:
        return await resolve_symbols(
            self._settings, stop, rest=self._spot_rest, before_attempt=lambda: raise_if_closed(self._nc)
        )

    async def _restore(self, kv: KeyValue, symbols: tuple[str, ...]) -> None:
        settings = self._settings
        now = _now_ms()
        for symbol in symbols:
            tape = SymbolTape(
                symbol, max_id_jump=settings.ingest_max_id_jump, gap_retry_max=settings.ingest_gap_retry_max_s
            )
            self.tapes[symbol] = tape
            try:
                entry = await read_entry(kv, symbol)
            except LedgerFormatError as exc:
                logger.error(
                    "ledger entry unreadable, resuming from the stream", extra={"symbol": symbol, "error": str(exc)}
                )
                entry = None
            if entry is not None:
                tape.restore(entry, now)
                self._written[symbol] = _written_key(entry)
                continue
            last = await self._last_stored_id(symbol)
            if last is not None:
                tape.resume_at(last)

    async def _last_stored_id(self, symbol: str) -> int | None:
        try:
            msg = await self._js.get_last_msg(TRADES_STREAM, trade_subject(symbol))
        except NotFoundError:
            return None
        try:
            return decode_trade(msg.data or b"").agg_id
        except TradeFormatError as exc:
            logger.error("last stored trade unreadable", extra={"symbol": symbol, "error": str(exc)})
            return None

    def _build_lanes(self, names: tuple[str, ...]) -> list[Feed]:
        """Add `names` (their tapes restored) to the lane of their market, building a lane where there is none.

        Returns the feeds built for them: connections carry only new instruments, numbered on
        after the lane's feeds, so a listing at runtime never touches a running connection.
        """
        settings = self._settings
        by_market: dict[Market, list[str]] = {}
        for name in names:
            by_market.setdefault(split_instrument(name)[0], []).append(name)
        added: list[Feed] = []
        for market, members in by_market.items():
            lane = self.lanes.get(market) or self._new_lane(market)
            api = market_api(market)
            for name in members:
                lane.tapes[split_instrument(name)[1]] = self.tapes[name]
                lane.filler_tapes[name] = self.tapes[name]
            options = FeedOptions(
                silence_timeout=settings.ingest_silence_timeout_s,
                max_age=settings.ingest_max_connection_age_s,
                max_frame_bytes=settings.ingest_max_frame_bytes,
                subscribe_interval=subscribe_interval_s(api.incoming_per_s),
            )
            first = len(lane.feeds)
            feeds = [
                Feed(
                    str(first + index) if market is Market.SPOT else f"{market}-{first + index}",
                    settings.binance_urls(market)[0],
                    group,
                    functools.partial(self.handle_frame, lane=lane),
                    limiter=self._limiter,
                    options=options,
                    on_subscribed=lane.filler.request_tails,
                    flow=self.publisher,
                    market=market,
                )
                for index, group in enumerate(
                    split_symbols(
                        tuple(split_instrument(n)[1] for n in members), settings.ingest_streams_per_connection
                    )
                )
            ]
            lane.feeds += feeds
            added += feeds
        return added

    def _new_lane(self, market: Market) -> MarketLane:
        """`market`'s lane with no instrument yet: its REST client, budget and gap filler."""
        settings = self._settings
        api = market_api(market)
        rest = self._spot_rest if market is Market.SPOT else RestClient.of(settings, market)
        budget = settings.rest_weight_per_minute(market)
        probes = TailSchedule(
            settings.ingest_tail_probe_after_s, probe_interval_s(budget, call_weight=api.agg_trades_weight)
        )
        filler_tapes: dict[str, SymbolTape] = {}
        filler = GapFiller(rest, filler_tapes, self._accept_rest, self._filler_ready, probes)
        lane = MarketLane(market, rest, filler, {}, filler_tapes)
        self.lanes[market] = lane
        return lane

    # -- instruments listed while ingest runs (a hook of its own: `follow_listings` does the asking) --

    async def _follow_listings(
        self, kv: KeyValue, stop: asyncio.Event, group: asyncio.TaskGroup, feeds: list[asyncio.Task[None]]
    ) -> None:
        """With `ALL`: an instrument listed while ingest runs gets its tape and a connection of its own, no restart."""

        async def listed(new: tuple[str, ...]) -> None:
            added = tuple(name for name in new if name not in self.tapes)
            if not added:
                return
            await self._restore(kv, added)
            for feed in self._build_lanes(added):
                feeds.append(group.create_task(feed.run(stop), name=f"ingest-feed-{feed.name}"))
            logger.info("listed symbols ingested", extra={"added": ",".join(added[:50]), "symbols": len(self.tapes)})

        await follow_listings(self._settings, stop, tuple(self.tapes), listed, rest=self._spot_rest)

    # -- the hot path: one call per frame, no awaits ---------------------------------

    def handle_frame(self, message: str | bytes, lane: MarketLane) -> ControlFrame | ReplyFrame | None:
        """One frame of `lane`'s market: its symbol is the exchange's, its tape the market's instrument."""
        try:
            frame = parse_frame(message, lane.tapes, self._settings.ingest_max_frame_bytes)
        except FrameError as exc:
            known = lane.tapes.get(exc.symbol or "")
            self.deadletter("ingest", None if known is None else known.symbol, message, exc.reason, exc.kind)
            return None
        if type(frame) is not AggTradeFrame:
            return frame  # type: ignore[return-value]
        tape = lane.tapes[frame.symbol]
        name = tape.symbol
        agg_id = frame.row.agg_id
        verdict = tape.offer(agg_id)
        if verdict is Verdict.NEW:
            self.arrival.record(frame.row.time, frame.data.get("E"))
            self.publisher.submit_trade(name, agg_id, encode_trade(frame.data))
        elif verdict is Verdict.IMPLAUSIBLE:
            reason = f"implausible agg id {agg_id}: more than {tape.max_id_jump} ahead of {tape.head}"
            self.deadletter("ingest", name, message, reason, "implausible_id")
            lane.filler.request_verify(name)
        return None

    def deadletter(self, source: str, symbol: str | None, message: str | bytes, reason: str, kind: str) -> None:
        """Keep a rejected message (cut to fit the max payload) with its reason; counted by kind."""
        raw = message if isinstance(message, bytes) else message.encode()
        if kind == "oversized":
            raw = raw[: self._settings.ingest_max_frame_bytes]  # a flood of them must not fill the dead-letter stream
        tape = self.tapes.get(symbol or "")
        counts = self.unknown_deadletters if tape is None else tape.counters.deadletters
        counts[kind] += 1
        body, headers = deadletter_message(raw, reason, self._nc.max_payload)
        self.publisher.submit(deadletter_subject(source, symbol), body, headers, symbol or "unknown")
        count = counts[kind]
        if count & (count - 1) == 0:  # the 1st, 2nd, 4th, 8th, ... of a kind: never a line per frame
            logger.warning(
                "dead-lettered",
                extra={
                    "source": source,
                    "symbol": symbol or "unknown",
                    "kind": kind,
                    "count": count,
                    "reason": reason[:200],
                },
            )

    def _accept_rest(self, symbol: str, page: list[RestTrade]) -> int:
        tape = self.tapes[symbol]
        submit = self.publisher.submit_trade
        accepted = 0
        for obj, row in page:
            if tape.offer(row.agg_id, live=False) is Verdict.NEW:
                submit(symbol, row.agg_id, encode_trade(obj))
                accepted += 1
        tape.counters.backfilled += accepted
        return accepted

    def _on_ack(self, symbol: str, agg_id: int, duplicate: bool) -> None:
        self.tapes[symbol].confirm(agg_id, duplicate)

    def _on_drop(self, symbol: str, agg_id: int) -> None:
        self.tapes[symbol].dropped(agg_id)

    def _filler_ready(self) -> bool:
        return self._nc.is_connected and not self.publisher.paused and self.publisher.pressure < 0.5

    # -- the ledger ------------------------------------------------------------------

    async def _ledger_loop(self, kv: KeyValue) -> None:
        while True:
            await asyncio.sleep(LEDGER_INTERVAL_S)
            await self._write_ledger(kv)

    async def _write_ledger(self, kv: KeyValue) -> None:
        now = _now_ms()
        changed: list[LedgerEntry] = []
        for symbol, tape in self.tapes.items():
            for gap in tape.normalize(now, self._retention_ms):
                logger.info(
                    "gap closed",
                    extra={
                        "symbol": symbol,
                        "from_id": gap.from_id,
                        "to_id": gap.to_id,
                        "age_s": round((now - gap.opened_ms) / 1000, 1),
                        "attempts": gap.attempts,
                    },
                )
            entry = tape.entry(now)
            if entry is not None and self._written.get(symbol) != _written_key(entry):
                changed.append(entry)
        if not changed or not self._nc.is_connected:
            return
        for start in range(0, len(changed), LEDGER_PUT_CHUNK):
            chunk = changed[start : start + LEDGER_PUT_CHUNK]
            results = await asyncio.gather(*(write_entry(kv, e) for e in chunk), return_exceptions=True)
            for entry, result in zip(chunk, results, strict=True):
                if isinstance(result, BaseException):
                    if not isinstance(result, (NatsError, TimeoutError)):
                        raise result
                    logger.warning(
                        "ledger write failed, retrying", extra={"symbol": entry.symbol, "error": repr(result)}
                    )
                else:
                    self._written[entry.symbol] = _written_key(entry)

    # -- visibility ------------------------------------------------------------------

    async def _answer_stats(self, msg: Msg) -> None:
        symbol: str | None = None
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
            request = orjson.loads(msg.data) if msg.data else {}
            symbol = request.get("symbol")
        reply = orjson.dumps(self.stats.snapshot(symbol))
        limit = self._nc.max_payload - 1024
        if len(reply) > limit:  # a refused publish would make nats-py close the connection for good
            reply = orjson.dumps(self.stats.snapshot(symbol, with_gaps=False))
        if len(reply) > limit:
            reply = orjson.dumps({"error": 'reply too large; ask for one symbol: {"symbol": "BTCUSDT"}'})
        with contextlib.suppress(NatsError):
            await msg.respond(reply)


def _written_key(entry: LedgerEntry) -> tuple[int, int, tuple[Any, ...]]:
    return entry.watermark, entry.last_id, tuple((g.from_id, g.to_id, g.attempts, g.last_error) for g in entry.gaps)
