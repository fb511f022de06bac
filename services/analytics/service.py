"""The analytics service: a NATS micro service answering `tape.query.<method>.<SYMBOL>`.

It serves the symbols of one shard (its share of `TRADETAPE_SYMBOLS`, or with `ALL` of
the exchange's TRADING symbols, asked at start and again every `symbols_refresh_s`:
`tradetape.binance.symbols`), reading that shard's RocksDB as a secondary instance, with
decoded segments kept between answers (`query_cache_mb`).

Freshness: persist announces each durable write on `tape.persist.written.<shard>` (core
NATS) and the worker catches up with the writer at once, in a thread of its own, so a query
asked after a write was announced and caught up with sees it without paying for a catch-up.
Notices that arrive while a catch-up runs make one more catch-up after it, not one each
(under load one catch-up covers many writes). A query catches up itself only when no
catch-up happened for `CATCH_UP_FALLBACK_S` (a notice lost while reconnecting).

Routing: each method is one wildcard endpoint (`tape.query.<method>.>`) in the shard's queue
group, so replicas share the load and `$SRV.INFO` stays a few KB whatever the symbol count.
Every shard's workers receive every query; the shard the instrument hashes to
(`tradetape.settings.shard_of`) answers it, or answers `unserved` when it does not serve the
instrument, and the other shards drop it before nats micro counts it (`queries_not_owned`).
The instruments served are published in NATS KV (`tradetape.bus.served`), at start, when a
listing adds some and every `SERVED_REPUBLISH_S`. `$SRV.PING|INFO|STATS` discover the workers;
error replies count in `$SRV.STATS` as errors.

Protection: a request without a reply subject, or whose reply subject is not an inbox
(`tradetape.bus.replies`, which guards the `$SRV` verbs too), is dropped before any work; at most
`query_concurrency` queries compute at once (in threads, so the event loop keeps
answering) and at most `query_max_pending` wait, the rest are answered `overloaded`;
ranges are capped at `query_max_range_days`; a query whose reads would need more than
`query_memory_mb` (its trades and histogram levels counted before decoding, times what
the method measured it needs per trade) is `range_too_large`; a reply above the
connection's max payload is the error `reply_too_large`, never a failed publish.

Errors: only a request's own faults (`tradetape.errors.RequestError`, and the validation of its
body) are `invalid_request`; a stored value that fails its checksum or format is
`store_corrupt` (500, naming the key, logged once per key; the worker keeps answering every
other range and symbol); anything else is `internal`.

Threads: the handlers run in a pool of `query_concurrency` threads over one shared
`ShardReader`. What they share is safe to share: RocksDB reads, the segment cache (a
lock; read-only arrays), each thread's own zstd objects (`tradetape.store.packing`);
the rest (request, source, arrays computed) belongs to one query.

Replays (`tradetape.services.analytics.replay`) stream stored ranges to their askers from the
`replay` endpoint (`tape.replay.open.>`), with their own threads and bounds.

A method that reads ingest's ledger (`coverage`) gets its open gaps from NATS KV with a short
deadline, each symbol's entry read at most every quarter second however many queries ask
(`tradetape.bus.ledger_cache`): a ledger that cannot be read makes them "unknown" in the
reply, never a failed query.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.errors import Error as JetStreamError
from nats.micro.request import Request

from tradetape import __version__
from tradetape.api.errors import (
    QueryError,
    check_range_span,
    internal_error,
    invalid_request,
    overloaded,
    range_too_large,
    reply_too_large,
    store_corrupt,
    unserved,
)
from tradetape.api.query_method import QueryMethod, TradeSource
from tradetape.api.registry import api_schema, methods
from tradetape.binance.rest import GapFillError
from tradetape.binance.symbols import ExchangeListings, follow_listings, resolve_symbols
from tradetape.bus.ledger import LedgerFormatError, LedgerGap
from tradetape.bus.ledger_cache import LedgerCache
from tradetape.bus.nats_internals import EndpointCounters
from tradetape.bus.replies import GuardedService, ReplyGuard
from tradetape.bus.served import Served, ServedFormatError, publish_served
from tradetape.bus.shard_stores import ShardStore, check_same_store, read_shard_store
from tradetape.bus.subjects import (
    ANALYTICS_SERVICE,
    SCHEMA_SUBJECT,
    VIEW_HEADER,
    analytics_queue_group,
    method_queries,
    queried_symbol,
    written_subject,
)
from tradetape.domain.instruments import Market, market_of
from tradetape.domain.sums import SumOverflowError
from tradetape.domain.symbols import SymbolError
from tradetape.errors import RequestError
from tradetape.ground.backoff import Backoff, retry_until
from tradetape.ground.tasks import cancel_and_wait, raise_if_cancelled, wait_any
from tradetape.runtime.metrics import ServiceMetrics, ServiceSnapshot
from tradetape.services.analytics.query_source import QuerySource
from tradetape.services.analytics.replay import ReplayResponder
from tradetape.services.analytics.warming import before_serving
from tradetape.settings import Settings, shard_of
from tradetape.store import ReadBudget, ReadTooLargeError, ShardReader, StoreCorruptError, StoreError, store_id

logger = logging.getLogger(__name__)

DAY_MS = 86_400_000
LEDGER_READ_TIMEOUT_S = 0.5
SHARD_STORE_READ_S = 1.0
CATCH_UP_FALLBACK_S = 1.0
"""A query catches up itself when no write notice made the worker catch up for this long (a notice was lost)."""
CORRUPT_KEYS_LOGGED = 10_000
"""Corrupt stored values logged one by one (each once); past that, once that there are more."""
SERVED_REPUBLISH_S = 60.0
"""The served list is put again this often: a bucket lost with a NATS server's state comes back."""


class AnalyticsService:
    def __init__(self, settings: Settings, nc: Client) -> None:
        self._settings = settings
        self._nc = nc
        self._reader = ShardReader(
            settings.shard_dir, cache_bytes=settings.query_cache_mb * 2**20, catch_up_every_s=CATCH_UP_FALLBACK_S
        )
        self._worker = secrets.token_hex(6)
        """Names this worker in reply views (`VIEW_HEADER`): replicas of a shard read states of their own."""
        self._catch_up_thread = ThreadPoolExecutor(1, thread_name_prefix="catch-up")
        """Catch-ups on notice never wait behind a long query for a thread."""
        self._computing = asyncio.Semaphore(settings.query_concurrency)
        self._threads = ThreadPoolExecutor(settings.query_concurrency, thread_name_prefix="query")
        """Exactly `query_concurrency` threads: each keeps its own malloc arena of freed query arrays."""
        self._pending = 0
        self._ledger = LedgerCache(lambda: self._nc.jetstream())
        self._answering: set[asyncio.Task[None]] = set()
        self._endpoint_stats = EndpointCounters(None)
        self.replies = ReplyGuard("analytics")
        self.errors: Counter[str] = Counter()
        self._corrupt_keys: set[bytes] = set()
        self._corrupt_lock = threading.Lock()
        """Query threads find corrupt values side by side; each key is logged once."""
        self._serving = False
        self.symbols: tuple[str, ...] = ()
        """The symbols served, known once `run` has resolved them; a listing adds to them."""
        self._served: frozenset[str] = frozenset()
        self._served_changed = asyncio.Event()
        self.not_owned = 0
        """Queries received for instruments of another shard, dropped unanswered."""
        self._listings = ExchangeListings(settings)
        self.contract_sizes: dict[str, int] = {}
        """COIN-M contract sizes from COIN-M's exchangeInfo; replaced whole (query threads read it), never changed."""
        self.metrics = ServiceMetrics("analytics", self._metrics_snapshot)
        self.replay = ReplayResponder(settings, nc, self._reader, lambda name: name in self.symbols)
        """Replay streams (`tradetape.services.analytics.replay`): the `replay` endpoint."""

    async def run(self, stop: asyncio.Event) -> None:
        try:
            checked = await self._check_store(stop)
        except BaseException:
            self._reader.close()
            raise
        if not checked:
            self._reader.close()
            return
        resolved = await resolve_symbols(self._settings, stop, listing=self._listings.resolve)
        if not resolved:
            self._reader.close()
            return
        self._serve(self._settings.shard_share(resolved))
        await before_serving(self._reader, self.symbols, self._settings, self._threads)
        settings = self._settings
        queue_group = analytics_queue_group(settings.shard)
        service = await GuardedService.start(
            self._nc,
            self.replies,
            name=ANALYTICS_SERVICE,
            version=__version__,
            description="Market-microstructure queries over the trade tape",
            queue_group=queue_group,
            metadata={
                "shard": settings.shard,
                "shard_index": str(settings.shard_index),
                "shard_count": str(settings.shard_count),
            },
        )
        tasks: list[asyncio.Task[None]] = []
        try:
            for name, method in methods().items():
                await service.add_endpoint(
                    name=name,
                    subject=method_queries(name),
                    handler=functools.partial(self._dispatch, method),
                    metadata={"method": name, "schema": SCHEMA_SUBJECT},
                    admit=functools.partial(self._owns_query, name),
                )
            schema = orjson.dumps(api_schema())
            await service.add_endpoint(
                name="schema", subject=SCHEMA_SUBJECT, handler=functools.partial(_respond, schema), metadata={}
            )
            await self.replay.serve(service)
            self._endpoint_stats = EndpointCounters(service.service)
            self._serving = True
            logger.info(
                "analytics started",
                extra={
                    "shard": settings.shard,
                    "queue_group": queue_group,
                    "symbols": len(self.symbols),
                    "methods": ",".join(methods()),
                },
            )
            tasks.append(asyncio.create_task(self._follow_writes(), name="analytics-writes"))
            tasks.append(asyncio.create_task(self._keep_served(stop), name="analytics-served"))
            listings = follow_listings(settings, stop, resolved, self._listed, listing=self._listings.resolve)
            tasks.append(asyncio.create_task(listings, name="analytics-listings"))
            tasks.append(asyncio.create_task(self._learn_contract_sizes(stop), name="analytics-contracts"))
            await stop.wait()
        finally:
            self._serving = False
            await self.replay.stop()
            for task in tasks:
                await cancel_and_wait(task)
            await service.stop()
            await self._finish_answers()
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._catch_up_thread.shutdown(wait=True)
            self._reader.close()
            logger.info(
                "analytics stopped",
                extra={"shard": self._settings.shard, "catch_ups": self._reader.catch_ups, **self.replies.errors},
            )

    def _serve(self, symbols: tuple[str, ...]) -> None:
        """Serve `symbols` besides those served already (the event loop's only: queries read the set there)."""
        added = tuple(symbol for symbol in symbols if symbol not in self._served)
        self.symbols += added
        self._served = frozenset(self.symbols)
        self._served_changed.set()

    async def _listed(self, listed: tuple[str, ...]) -> None:
        """Symbols the exchange listed since the start: this shard's share is served from now on."""
        share = self._settings.shard_share(listed)
        if share:
            self._serve(share)
            logger.info("symbols served", extra={"added": ",".join(share[:50]), "symbols": len(self.symbols)})

    async def _learn_contract_sizes(self, stop: asyncio.Event) -> None:
        """Keep COIN-M's contract sizes for the COIN-M instruments served (their base and quote volumes): asked of
        COIN-M's exchangeInfo while one is unknown (with capped backoff), then every `symbols_refresh_s`. Answers
        carry those volumes once known; an unreachable exchange never stops a query."""
        backoff = Backoff(1.0, 60.0)
        while not stop.is_set():
            self.contract_sizes = dict(self._listings.contract_sizes)
            coins = [symbol for symbol in self.symbols if market_of(symbol) is Market.CM]
            missing = [symbol for symbol in coins if symbol not in self.contract_sizes]
            delay = self._settings.symbols_refresh_s or 3600.0
            if missing:
                try:
                    await self._listings.resolve(Market.CM)
                    self.contract_sizes = dict(self._listings.contract_sizes)
                    backoff.reset()
                except GapFillError as exc:
                    delay = backoff.next_delay()
                    logger.warning(
                        "COIN-M contract sizes unknown, retrying",
                        extra={"missing": len(missing), "error": exc.reason, "delay_s": round(delay, 1)},
                    )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay if missing else min(delay, 60.0))

    async def _follow_writes(self) -> None:
        """Catch up with the writer on each write notice of the shard, coalescing those heard meanwhile.

        A notice's body is not read: anything on the subject costs at most one catch-up at a
        time, whatever comes how often.
        """
        heard = asyncio.Event()

        async def on_notice(msg: Msg) -> None:
            heard.set()

        subscription = await self._nc.subscribe(written_subject(self._settings.shard), cb=on_notice)
        loop = asyncio.get_running_loop()
        try:
            while True:
                await heard.wait()
                raise_if_cancelled()
                heard.clear()
                try:
                    await loop.run_in_executor(self._catch_up_thread, self._reader.catch_up)
                except StoreError as exc:  # a query then catches up itself, or the next notice does
                    logger.warning("catch-up on notice failed", extra={"error": repr(exc)})
        finally:
            with contextlib.suppress(NatsError):
                await subscription.unsubscribe()

    async def _keep_served(self, stop: asyncio.Event) -> None:
        """Publish the served list now, whenever it grows, and every `SERVED_REPUBLISH_S` (`tradetape.bus.served`)."""
        settings = self._settings
        while not stop.is_set():
            raise_if_cancelled()
            self._served_changed.clear()
            served = Served(
                shard=settings.shard,
                shard_index=settings.shard_index,
                shard_count=settings.shard_count,
                methods=list(methods()),
                symbols=list(self.symbols),
                updated_ms=int(time.time() * 1000),
            )
            try:
                await publish_served(
                    self._nc.jetstream(), served, max_payload=self._nc.max_payload, replicas=settings.stream_replicas
                )
            except ServedFormatError as exc:
                logger.error("served list not published", extra={"shard": settings.shard, "error": str(exc)})
            except (NatsError, JetStreamError, TimeoutError) as exc:
                logger.warning("served list not published", extra={"shard": settings.shard, "error": repr(exc)})
            await wait_any(SERVED_REPUBLISH_S, self._served_changed, stop)

    def _owns_query(self, method: str, msg: Msg) -> bool:
        """Whether this shard answers `msg`: the one its instrument hashes to (an unreadable subject: by its hash).

        Every shard's workers receive every query; the others drop it here, before nats micro counts it.
        """
        try:
            key = queried_symbol(method, msg.subject)
        except SymbolError:
            key = msg.subject
        if self._settings.shard_count == 1 or shard_of(key, self._settings.shard_count) == self._settings.shard_index:
            return True
        self.not_owned += 1
        return False

    async def _check_store(self, stop: asyncio.Event) -> bool:
        """Refuse to serve the shard from a store that is not the one its persist writes (`ForeignStoreError`).

        A record that cannot be read yet (a cluster electing its leaders) is asked again until
        `stop`; False if stopped before it was read.
        """

        async def read() -> tuple[ShardStore | None]:
            return (await read_shard_store(self._nc.jetstream(), self._settings.shard),)

        read_once = await retry_until(
            stop, read, transient=(NatsError, JetStreamError), what="shard store record", timeout_s=SHARD_STORE_READ_S
        )
        if read_once is None:
            return False
        (record,) = read_once
        check_same_store(record, store_id(self._settings.shard_dir), self._settings.shard_dir)
        if record is None:
            logger.warning("no store recorded for the shard yet", extra={"shard": self._settings.shard})
        return True

    async def _dispatch(self, method: QueryMethod[Any, Any], request: Request) -> None:
        """Start the answer and return: nats-py runs an endpoint's handler one request at a time.

        Measured: a 2-minute `bars` query sent while a 24 h one (1 s) was being answered on the
        same endpoint waited the whole second. Each request is its own task instead; the
        semaphore and `query_max_pending` still bound the work.
        """
        task = asyncio.create_task(self._handle(method, request), name=f"query-{method.name}")
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _handle(self, method: QueryMethod[Any, Any], request: Request) -> None:
        started = time.perf_counter()
        endpoint = method_queries(method.name)
        symbol = request.subject[:80]
        try:
            try:
                symbol = self._served_symbol(method, request.subject)
                body, view = await self._compute(method, symbol, request.data)
            except QueryError as exc:
                logger.info("query rejected", extra={"method": method.name, "symbol": symbol, "code": exc.code})
                self.errors[exc.code] += 1
                self._endpoint_stats.error(endpoint, exc.message)
                await request.respond_error(str(exc.status), exc.message, data=exc.reply().model_dump_json().encode())
            else:
                await request.respond(body, headers={VIEW_HEADER: view} if view else None)
        except NatsError as exc:
            logger.warning("query reply not sent", extra={"method": method.name, "symbol": symbol, "error": repr(exc)})
        elapsed = time.perf_counter() - started
        self._endpoint_stats.processed(endpoint, elapsed)
        self.metrics.observe_query(method.name, elapsed)
        logger.debug("query answered", extra={"method": method.name, "symbol": symbol, "ms": round(elapsed * 1000, 1)})

    def _served_symbol(self, method: QueryMethod[Any, Any], subject: str) -> str:
        """The instrument a query names, if this shard serves it; `invalid_request` or `unserved` otherwise."""
        try:
            symbol = queried_symbol(method.name, subject)
        except SymbolError as exc:
            raise invalid_request(str(exc)) from None
        if symbol not in self._served:
            raise unserved(symbol, self._settings.shard, len(self._served))
        return symbol

    async def _finish_answers(self, timeout: float = 5.0) -> None:
        """Let the answers in flight be sent (at most `timeout`), then cancel what is left."""
        if not self._answering:
            return
        _, late = await asyncio.wait(set(self._answering), timeout=timeout)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    async def _metrics_snapshot(self) -> ServiceSnapshot:
        connected = self._nc.is_connected
        return ServiceSnapshot(
            ready=self._serving and connected,
            reason="" if self._serving and connected else "nats disconnected" if self._serving else "starting",
            errors={**self.errors, **self.replies.errors, **self.replay.counts},
            queries_not_owned=self.not_owned,
        )

    async def _compute(self, method: QueryMethod[Any, Any], symbol: str, data: bytes) -> tuple[bytes, str | None]:
        """The reply body, and the view it read (`VIEW_HEADER`) if it read one state of the store."""
        if self._pending >= self._settings.query_max_pending:
            raise overloaded(self._pending)
        self._pending += 1
        try:
            gaps = await self._ingest_gaps(symbol) if method.reads_ingest_ledger else None
            source = QuerySource(self._reader, self.budget(method), symbol, gaps, contract_sizes=self.contract_sizes)
            async with self._computing:
                call = functools.partial(self._answer_in_view, method, symbol, data, source)
                return await asyncio.get_running_loop().run_in_executor(self._threads, call)
        finally:
            self._pending -= 1

    async def _ingest_gaps(self, symbol: str) -> list[LedgerGap] | None:
        """Ingest's open gaps for `symbol`; None when the ledger has no entry or cannot be read in time."""
        try:
            async with asyncio.timeout(LEDGER_READ_TIMEOUT_S):
                entry = await self._ledger.entry(symbol)
        except (TimeoutError, NatsError, JetStreamError, LedgerFormatError) as exc:
            logger.warning("ingest ledger not readable", extra={"symbol": symbol, "error": repr(exc)})
            return None
        return None if entry is None else list(entry.gaps)

    def _answer_in_view(
        self, method: QueryMethod[Any, Any], symbol: str, data: bytes, source: TradeSource
    ) -> tuple[bytes, str | None]:
        before = self._reader.generation
        body = self.answer(method, symbol, data, source)
        after = self._reader.generation
        return body, f"{self._worker}.{before}" if before == after and before % 2 == 0 else None

    def answer(
        self, method: QueryMethod[Any, Any], symbol: str, data: bytes, source: TradeSource | None = None
    ) -> bytes:
        """The reply body for one request; raises `QueryError` for anything a client must hear about."""
        request = method.parse_request(data)
        now_ms = int(time.time() * 1000)
        if method.bounded_range:
            self._check_range(request.time_range(now_ms))
        source = source or QuerySource(self._reader, self.budget(method), symbol, contract_sizes=self.contract_sizes)
        try:
            body = method.reply_json(source, symbol, request, now_ms)
        except QueryError:
            raise
        except ReadTooLargeError as exc:
            raise self._over_budget(exc, request.time_range(now_ms)) from None
        except SumOverflowError as exc:  # sums past 2**126 units: no tape holds them, a hostile one might
            raise range_too_large(f"{exc}; ask for a shorter range") from None
        except StoreCorruptError as exc:  # stored bytes, not the request, are at fault
            self._corrupt_found(exc, method.name, symbol)
            raise store_corrupt(exc.key.decode(errors="replace"), exc.reason) from exc
        except RequestError as exc:  # only the request's own faults are the asker's
            raise invalid_request(str(exc)) from exc
        except Exception as exc:  # the one boundary: a failed query is a reply, never a dead worker
            logger.exception("query failed", extra={"method": method.name, "symbol": symbol})
            raise internal_error(exc) from exc
        if len(body) > self._nc.max_payload:
            raise reply_too_large(len(body), self._nc.max_payload, method.reply_hint)
        return body

    def _corrupt_found(self, exc: StoreCorruptError, method: str, symbol: str) -> None:
        """Log a corrupt stored value the first time a query meets it (every answer counts in `errors`)."""
        with self._corrupt_lock:
            if exc.key in self._corrupt_keys or len(self._corrupt_keys) > CORRUPT_KEYS_LOGGED:
                return
            self._corrupt_keys.add(exc.key)
            more = len(self._corrupt_keys) > CORRUPT_KEYS_LOGGED
        if more:
            logger.error("more corrupt stored values than are logged one by one", extra={"logged": CORRUPT_KEYS_LOGGED})
            return
        extra = {"key": exc.key.decode(errors="replace"), "reason": exc.reason, "method": method, "symbol": symbol}
        logger.error("stored value corrupt", extra=extra)

    def budget(self, method: QueryMethod[Any, Any]) -> ReadBudget:
        """What one query of `method` may hold (`query_memory_mb`), at the method's measured cost a trade."""
        return ReadBudget(self._settings.query_memory_mb * 2**20, method.trade_bytes, method.level_bytes)

    def _over_budget(self, exc: ReadTooLargeError, time_range: tuple[int, int] | None) -> QueryError:
        share = exc.budget.max_bytes / exc.estimate
        hint = "ask for a shorter range"
        if time_range is not None:
            hint += f" (about {share * (time_range[1] - time_range[0]) / DAY_MS:.2g} days of these trades fit)"
        return range_too_large(
            f"the query would need about {exc.estimate / 2**20:.0f} MB for {exc.trades} trades, above the"
            f" {exc.budget.max_bytes / 2**20:.0f} MB a query may use; {hint}",
            estimated_bytes=exc.estimate,
            budget_bytes=exc.budget.max_bytes,
            trades=exc.trades,
            levels=exc.levels,
            hint=f"{hint}, or raise TRADETAPE_QUERY_MEMORY_MB",
        )

    def _check_range(self, time_range: tuple[int, int] | None) -> None:
        if time_range is not None:
            check_range_span(*time_range, self._settings.query_max_range_days)


async def _respond(body: bytes, request: Request) -> None:
    await request.respond(body)
