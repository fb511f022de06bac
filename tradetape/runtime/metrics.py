"""What a running service shows operators: Prometheus metrics, a health rule, its `$SRV` presence.

Each service keeps the counters it already logs; a scrape reads them through the
service's snapshot (`ServiceSnapshot`) and turns them into metric families, so nothing is
counted twice and the hot paths pay nothing per trade. The one stateful metric is the
query latency histogram, observed once per query.

`MetricsServer` serves `GET /metrics` (Prometheus text format) and `GET /healthz` (200
`ok` once the service is connected to NATS and ready, 503 with the reason otherwise,
including while it still waits for NATS) on `metrics_host:metrics_port`. It runs on the
service's own event loop, so a scrape reads the counters between two steps of the
service, never in the middle of one. Every request passes `tradetape.runtime.http_access`
(Host, Origin, the request deadline, the connection bound).

`announce` registers a NATS micro service with no endpoints for a service that has none
(ingest, persist), so `$SRV.PING|INFO|STATS` list every instance with its version,
uptime and metadata (analytics is a micro service already), answering inboxes only (the
service's `ReplyGuard`, whose drops its metrics show); `discover` collects those answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tradetape import __version__
from tradetape.bus.replies import GuardedService, ReplyGuard
from tradetape.bus.subjects import micro_subject
from tradetape.domain.instruments import is_instrument, market_of
from tradetape.errors import ConfigError
from tradetape.runtime.http_access import ConnectionSlots, HttpAccess

logger = logging.getLogger(__name__)

PREFIX = "tradetape"
QUERY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Query latency buckets in seconds: a 1 h profile takes ~10 ms, a 24 h one ~0.5 s."""
MAX_REQUEST_BYTES = 8192
"""The request line and headers of a scrape fit in this; a longer head is dropped."""


@dataclass(frozen=True, slots=True)
class ServiceSnapshot:
    """A service's counters at one instant, as its metrics and its health answer show them.

    Counters only grow over the life of the process; gauges (`open_gaps`, `missing_trades`,
    `stream_lag`, `ack_pending`, `publish_backlog`, `segments`) are the value now.
    """

    ready: bool
    reason: str = ""
    """Why the service is not ready (empty when it is)."""
    trades_in: Mapping[str, int] = field(default_factory=dict)
    trades_out: Mapping[str, int] = field(default_factory=dict)
    errors: Mapping[str, int] = field(default_factory=dict)
    open_gaps: Mapping[str, int] = field(default_factory=dict)
    missing_trades: Mapping[str, int] = field(default_factory=dict)
    stream_lag: Mapping[str, int] = field(default_factory=dict)
    ack_pending: Mapping[str, int] = field(default_factory=dict)
    publish_backlog: int | None = None
    """Ingest: trades buffered or in flight to the stream."""
    windows_written: int | None = None
    windows_rolled_up: int | None = None
    segments: Mapping[str, int] = field(default_factory=dict)
    queries_not_owned: int | None = None
    """Analytics: queries for another shard's instruments, dropped unanswered (that shard answers them)."""


SnapshotSource = Callable[[], Awaitable[ServiceSnapshot]]


SYMBOL_LABEL = "symbol"
"""Holds the instrument's name (`BTCUSDT`, `um:BTCUSDT`), as every surface names it."""
MARKET_LABEL = "market"
"""Beside `symbol` on every per-instrument series: `spot`, `um` or `cm`, to sum or filter by market."""
_LABELLED: tuple[tuple[str, str, str, str], ...] = (
    ("trades_in", "counter", "symbol", "trades received (ingest: from the exchange; persist: from the stream)"),
    ("trades_out", "counter", "symbol", "trades passed on (ingest: stored by the stream; persist: written to RocksDB)"),
    ("errors", "counter", "code", "errors by code (dead-letter kinds, store errors, query error codes)"),
    ("open_gaps", "gauge", "symbol", "gaps open in the ingest ledger"),
    ("missing_trades", "gauge", "symbol", "agg ids inside open gaps (not yet confirmed stored)"),
    ("stream_lag", "gauge", "consumer", "messages of the stream not yet delivered to the consumer (num_pending)"),
    ("ack_pending", "gauge", "consumer", "messages delivered to the consumer and not yet acked"),
    ("segments", "gauge", "symbol", "hour segments the shard's RocksDB holds"),
)
_TOTALS: tuple[tuple[str, str, str], ...] = (
    ("windows_written", "counter", "1-second windows written (one per symbol and second of a batch)"),
    ("windows_rolled_up", "counter", "1-second windows rolled up into hour segments"),
    ("publish_backlog", "gauge", "trades buffered or in flight to the stream"),
    ("queries_not_owned", "counter", "queries for another shard's instruments, dropped (that shard answers them)"),
)


def snapshot_families(service: str, snapshot: ServiceSnapshot) -> list[Metric]:
    """The Prometheus metric families of one snapshot (pure: tested directly)."""
    ready = GaugeMetricFamily(f"{PREFIX}_ready", "1 when connected to NATS and ready, else 0", labels=["service"])
    ready.add_metric([service], 1 if snapshot.ready else 0)
    info = GaugeMetricFamily(f"{PREFIX}_info", "the running version", labels=["service", "version"])
    info.add_metric([service, __version__], 1)
    families: list[Metric] = [ready, info]
    for name, kind, label, doc in _LABELLED:
        by_symbol = label == SYMBOL_LABEL
        family = _family(kind, f"{PREFIX}_{name}", doc, ["service", label, *([MARKET_LABEL] if by_symbol else [])])
        values: Mapping[str, int] = getattr(snapshot, name)
        for key, value in sorted(values.items()):
            family.add_metric([service, key, *([_market(key)] if by_symbol else [])], value)
        families.append(family)
    for name, kind, doc in _TOTALS:
        total: int | None = getattr(snapshot, name)
        if total is not None:
            family = _family(kind, f"{PREFIX}_{name}", doc, ["service"])
            family.add_metric([service], total)
            families.append(family)
    return families


def _market(name: str) -> str:
    """The `market` label of an instrument's series (`spot`, `um`, `cm`); empty for a key that names none."""
    return market_of(name).value if is_instrument(name) else ""


def _family(kind: str, name: str, doc: str, labels: list[str]) -> CounterMetricFamily | GaugeMetricFamily:
    if kind == "counter":
        return CounterMetricFamily(name, doc, labels=labels)
    return GaugeMetricFamily(name, doc, labels=labels)


class _SnapshotCollector(Collector):
    def __init__(self, service: str) -> None:
        self._service = service
        self.snapshot = ServiceSnapshot(ready=False, reason="starting")

    def collect(self) -> Iterator[Metric]:
        yield from snapshot_families(self._service, self.snapshot)


class ServiceMetrics:
    """One service's metrics registry: its snapshot, the query latency histogram, the process (RSS, CPU)."""

    def __init__(self, service: str, source: SnapshotSource) -> None:
        self.service = service
        self._source = source
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        self._collector = _SnapshotCollector(service)
        self.registry.register(self._collector)
        self.query_seconds = Histogram(
            f"{PREFIX}_query_duration_seconds",
            "time from a query's arrival to its reply, errors included",
            ["method"],
            buckets=QUERY_BUCKETS,
            registry=self.registry,
        )

    def observe_query(self, method: str, seconds: float) -> None:
        self.query_seconds.labels(method).observe(seconds)

    async def snapshot(self) -> ServiceSnapshot:
        self._collector.snapshot = await self._source()
        return self._collector.snapshot

    async def exposition(self) -> bytes:
        await self.snapshot()
        return generate_latest(self.registry)


class MetricsPortError(ConfigError, RuntimeError):
    """The metrics address cannot be listened on (taken, or not an address of this host)."""


class MetricsServer:
    """`GET /metrics` and `GET /healthz` over plain HTTP/1.1 (one request a connection); port 0: off."""

    def __init__(self, host: str, port: int, access: HttpAccess) -> None:
        self.host = host
        self.port = port
        self._access = access
        self._slots = ConnectionSlots(access.max_connections)
        self.metrics: ServiceMetrics | None = None
        self._waiting = "waiting for NATS"
        self._server: asyncio.Server | None = None

    def attach(self, metrics: ServiceMetrics) -> None:
        """The service whose metrics and health this server answers from now on."""
        self.metrics = metrics

    async def start(self) -> None:
        if not self.port:
            return
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.port, limit=MAX_REQUEST_BYTES)
        except OSError as exc:
            raise MetricsPortError(f"cannot serve metrics on {self.host}:{self.port}: {exc.strerror or exc}") from exc
        logger.info("metrics serving", extra={"url": f"http://{self.host}:{self.port}/metrics"})

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def __aenter__(self) -> MetricsServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def answer(self, method: str, path: str) -> tuple[int, str, bytes]:
        """Status, content type and body for one request."""
        path = path.split("?", 1)[0]
        if path not in ("/metrics", "/healthz"):
            return 404, "text/plain", b"not found: try /metrics or /healthz\n"
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"only GET\n"
        if path == "/metrics":
            if self.metrics is None:
                return 503, "text/plain", f"not started: {self._waiting}\n".encode()
            return 200, CONTENT_TYPE_LATEST, await self.metrics.exposition()
        if self.metrics is None:
            return 503, "text/plain", f"not ready: {self._waiting}\n".encode()
        snapshot = await self.metrics.snapshot()
        if snapshot.ready:
            return 200, "text/plain", b"ok\n"
        return 503, "text/plain", f"not ready: {snapshot.reason}\n".encode()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._slots.take():
            writer.transport.abort()
            return
        try:
            async with asyncio.timeout(self._access.request_timeout_s):
                request_line, headers = await _read_head(reader)
            parts = request_line.split()
            refused = self._access.refusal(headers)
            extra = refused.headers if refused is not None else ()
            if len(parts) != 3:
                status, content_type, body = 400, "text/plain", b"bad request\n"
            elif refused is not None:
                status, content_type, body = refused.status, "text/plain", f"{refused.reason}\n".encode()
            else:
                status, content_type, body = await self.answer(parts[0], parts[1])
            lines = [f"HTTP/1.1 {status} {_REASONS[status]}", f"Content-Type: {content_type}"]
            lines += [f"{name}: {value}" for name, value in extra]
            lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
            head = "\r\n".join(lines)
            async with asyncio.timeout(self._access.request_timeout_s):
                writer.write(head.encode() + (b"" if parts[:1] == ["HEAD"] else body))
                await writer.drain()
                writer.close()
                await writer.wait_closed()
        except (TimeoutError, ConnectionError, ValueError, asyncio.LimitOverrunError):
            pass  # a client that went away, sent garbage or took too long gets nothing more
        finally:
            self._slots.give_back()
            if not writer.transport.is_closing():
                writer.transport.abort()


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, list[tuple[str, str]]]:
    """The request line and the (name, value) header pairs; ValueError past `MAX_REQUEST_BYTES`."""
    request_line = await reader.readline()
    size = len(request_line)
    headers: list[tuple[str, str]] = []
    while (line := await reader.readline()).strip():
        size += len(line)
        if size > MAX_REQUEST_BYTES:
            raise ValueError("request head too large")
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    return request_line.decode("latin-1"), headers


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    421: "Misdirected Request",
    503: "Service Unavailable",
}


async def announce(nc: Client, service: str, metadata: Mapping[str, str], replies: ReplyGuard) -> GuardedService:
    """A micro service without endpoints: `$SRV.PING|INFO|STATS` list this instance (name `tradetape-<service>`)."""
    return await GuardedService.start(
        nc,
        replies,
        name=f"{PREFIX}-{service}",
        version=__version__,
        description=f"tradetape {service}",
        metadata=dict(metadata),
    )


async def discover(
    nc: Client, verb: str = "INFO", service: str | None = None, wait: float = 0.5
) -> list[dict[str, Any]]:
    """Every instance's answer to `$SRV.<verb>[.<service>]` that arrives within `wait` seconds."""
    subject = micro_subject(verb, service)
    inbox = nc.new_inbox()
    subscription = await nc.subscribe(inbox)
    replies: list[dict[str, Any]] = []
    try:
        await nc.publish(subject, b"", reply=inbox)
        deadline = asyncio.get_running_loop().time() + wait
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                msg = await subscription.next_msg(timeout=left)
            except NatsTimeoutError:
                break
            if msg.data:  # an empty body is the server's "no responders" status
                with contextlib.suppress(orjson.JSONDecodeError):
                    replies.append(orjson.loads(msg.data))
    finally:
        await subscription.unsubscribe()
    return replies
