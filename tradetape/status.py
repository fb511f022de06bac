"""The system's state at a glance: what `tradetape status` shows and `--json` prints.

One read of everything an operator asks first: is NATS reachable, how deep is the trades
stream and how far behind is each consumer, which service instances answer `$SRV.PING`
(with their versions and uptimes from `$SRV.INFO` / `$SRV.STATS`), what each analytics shard
serves (its served list in NATS KV, `tradetape.bus.served`), ingest's tail probe (from its
stats: how soon a lost last trade is found), and per symbol what the store holds (analytics
`coverage`, `SYMBOL_CONCURRENCY` symbols at a time), the gaps ingest still has open (its
ledger) and the disk its shard uses. A part that does not answer is reported as such (`None` and a note in
`problems`), never an exception: a status screen is most needed when something is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError
from pydantic import BaseModel, ValidationError

from tradetape.bus.ledger import LedgerFormatError, open_gaps
from tradetape.bus.served import Served, read_served
from tradetape.bus.subjects import INGEST_STATS_SUBJECT, TRADES_STREAM
from tradetape.client import ClientQueryError, TapeClient, TapeUnavailable
from tradetape.domain.instruments import is_instrument
from tradetape.runtime.metrics import PREFIX, discover
from tradetape.settings import Settings, market_of_all
from tradetape.store import find_shards

DISCOVERY_WAIT_S = 0.5
INGEST_SERVICE = f"{PREFIX}-ingest"
QUERY_TIMEOUT_S = 5.0
SYMBOL_CONCURRENCY = 16
"""Symbols whose coverage and ledger are asked at once: thousands at once would be answered `overloaded`."""


class NatsStatus(BaseModel):
    reachable: bool
    url: str
    """Redacted: no credentials."""
    connected_to: str | None = None
    """The server of the list this connection uses (host:port)."""
    server_version: str | None = None
    error: str | None = None


class ConsumerStatus(BaseModel):
    name: str
    pending: int
    """Messages the consumer has not been delivered yet: its lag."""
    ack_pending: int
    redelivered: int


class StreamStatus(BaseModel):
    name: str
    messages: int
    bytes: int
    first_seq: int
    last_seq: int
    replicas: int
    cluster: str | None
    leader: str | None
    replicas_current: int
    """Replicas (besides the leader) that are current: below `replicas - 1`, a node is away or behind."""
    consumers: list[ConsumerStatus]


class ServiceStatus(BaseModel):
    name: str
    id: str
    version: str
    started: str | None
    """ISO-8601 UTC, from `$SRV.STATS`."""
    uptime_s: float | None
    metadata: dict[str, str]
    requests: int
    errors: int


class TailProbeStatus(BaseModel):
    """Ingest's tail probe: quiet symbols asked over REST for the trades after their newest id."""

    after_s: float
    """A symbol quiet this long is probed, and again every this long while it stays quiet."""
    interval_s: float
    """Seconds between two probes: half the REST weight budget."""
    symbols: int
    quiet: int
    found_within_s: float
    """The longest a lost last trade stays unknown with every symbol quiet: `after_s + symbols × interval_s`."""
    probes: int
    found_trades: int
    failures: int


class SymbolStatus(BaseModel):
    symbol: str
    shard: str | None
    trade_count: int | None
    """None when no analytics worker answered for the symbol."""
    first_time: int | None = None
    last_time: int | None = None
    stored_gaps: int | None = None
    """Holes in the stored agg ids (coverage)."""
    missing_count: int | None = None
    open_gaps: int | None = None
    """Gaps ingest's ledger still has open (being fetched); None when the ledger was not readable."""
    disk_bytes: int | None = None
    """The disk use of the symbol's shard directory (shared by the shard's symbols), when it is local."""


class ShardServed(BaseModel):
    """What one analytics shard serves, as its workers last published it."""

    shard: str
    shard_index: int
    shard_count: int
    symbols: int
    methods: list[str]
    updated_ms: int


class SystemStatus(BaseModel):
    collected_at: int
    """Epoch ms."""
    nats: NatsStatus
    stream: StreamStatus | None = None
    services: list[ServiceStatus] = []
    served: list[ShardServed] = []
    tail_probe: TailProbeStatus | None = None
    """None when no ingest runs or it did not answer."""
    symbols: list[SymbolStatus] = []
    problems: list[str] = []


def unreachable(url: str, error: str) -> SystemStatus:
    return SystemStatus(collected_at=_now_ms(), nats=NatsStatus(reachable=False, url=url, error=error))


async def collect_status(nc: Client, settings: Settings, url: str) -> SystemStatus:
    """Everything `tradetape status` shows, read from the connected server and the local data dir."""
    problems: list[str] = []
    server, version = nc.connected_url, nc.connected_server_version
    nats_status = NatsStatus(
        reachable=True,
        url=url,
        connected_to=None if server is None else f"{server.hostname}:{server.port}",
        server_version=f"{version.major}.{version.minor}.{version.patch}",
    )
    stream = await _stream_status(nc, problems)
    services = await _services(nc)
    tail_probe = await _tail_probe(nc, problems) if any(s.name == INGEST_SERVICE for s in services) else None
    served = await _served(nc, problems)
    shards = find_shards(settings.data_dir / "shards")
    owners = _symbol_shards(services, shards, served)
    if owners or not settings.symbols_from_exchange:
        symbols = sorted(set(owners) | (set() if owners else set(settings.symbols)))
    else:
        symbols = []
        problems.append(
            f"{Settings.env_name('symbols')}={','.join(settings.symbols)}: no shard manifest under "
            f"{settings.data_dir / 'shards'} and no "
            "running persist or analytics names its symbols yet"
        )
    disk = {shard: _disk_bytes(settings.data_dir / "shards" / shard) for shard in shards}
    tape = TapeClient(nc, timeout=QUERY_TIMEOUT_S)
    slots = asyncio.Semaphore(SYMBOL_CONCURRENCY)

    async def row(symbol: str) -> SymbolStatus:
        async with slots:
            return await _symbol_status(nc, tape, symbol, owners.get(symbol), disk, problems)

    rows = await asyncio.gather(*(row(s) for s in symbols))
    shards_served = [
        ShardServed(
            shard=name, shard_index=value.shard_index, shard_count=value.shard_count, symbols=len(value.symbols),
            methods=value.methods, updated_ms=value.updated_ms,
        )
        for name, value in served.items()
    ]
    return SystemStatus(
        collected_at=_now_ms(), nats=nats_status, stream=stream, services=services, served=shards_served,
        tail_probe=tail_probe, symbols=list(rows), problems=problems,
    )


async def _stream_status(nc: Client, problems: list[str]) -> StreamStatus | None:
    js = nc.jetstream()
    try:
        info = await js.stream_info(TRADES_STREAM)
        consumers = await js.consumers_info(TRADES_STREAM)
    except NotFoundError:
        problems.append(f"stream {TRADES_STREAM} does not exist yet (ingest or persist creates it)")
        return None
    except (NatsError, TimeoutError) as exc:
        problems.append(f"stream {TRADES_STREAM} not readable: {exc!r}")
        return None
    state = info.state
    return StreamStatus(
        name=TRADES_STREAM,
        messages=state.messages,
        bytes=state.bytes,
        first_seq=state.first_seq,
        last_seq=state.last_seq,
        replicas=info.config.num_replicas or 1,
        cluster=info.cluster.name if info.cluster else None,
        leader=info.cluster.leader if info.cluster else None,
        replicas_current=sum(1 for peer in (info.cluster.replicas or []) if peer.current) if info.cluster else 0,
        consumers=[
            ConsumerStatus(
                name=c.name,
                pending=c.num_pending or 0,
                ack_pending=c.num_ack_pending or 0,
                redelivered=c.num_redelivered or 0,
            )
            for c in sorted(consumers, key=lambda c: c.name)
        ],
    )


async def _services(nc: Client) -> list[ServiceStatus]:
    """Every micro service instance that answers `$SRV.PING`, with its `$SRV.INFO` and `$SRV.STATS`."""
    pings, infos, stats = await asyncio.gather(
        discover(nc, "PING", wait=DISCOVERY_WAIT_S),
        discover(nc, "INFO", wait=DISCOVERY_WAIT_S),
        discover(nc, "STATS", wait=DISCOVERY_WAIT_S),
    )
    info_of = {reply.get("id"): reply for reply in infos}
    stats_of = {reply.get("id"): reply for reply in stats}
    now = datetime.now(UTC)
    found: list[ServiceStatus] = []
    for ping in pings:
        instance = str(ping.get("id", ""))
        info, stat = info_of.get(instance, {}), stats_of.get(instance, {})
        started = stat.get("started")
        uptime = None
        if isinstance(started, str):
            with contextlib.suppress(ValueError):
                uptime = (now - datetime.fromisoformat(started.replace("Z", "+00:00"))).total_seconds()
        endpoints = stat.get("endpoints") or []
        found.append(
            ServiceStatus(
                name=str(ping.get("name", "")),
                id=instance,
                version=str(ping.get("version", "")),
                started=started if isinstance(started, str) else None,
                uptime_s=None if uptime is None else round(uptime, 1),
                metadata={str(k): str(v) for k, v in (info.get("metadata") or ping.get("metadata") or {}).items()},
                requests=sum(int(e.get("num_requests", 0)) for e in endpoints),
                errors=sum(int(e.get("num_errors", 0)) for e in endpoints),
            )
        )
    return sorted(found, key=lambda s: (s.name, s.metadata.get("shard", ""), s.id))


async def _tail_probe(nc: Client, problems: list[str]) -> TailProbeStatus | None:
    """The tail probe figures of ingest's stats, asked without per-symbol counters (a symbol it does not have)."""
    try:
        reply = orjson.loads((await nc.request(INGEST_STATS_SUBJECT, b'{"symbol": ""}', timeout=QUERY_TIMEOUT_S)).data)
        return TailProbeStatus.model_validate(reply.get("tail_probe") if isinstance(reply, dict) else None)
    except (NatsError, TimeoutError, ValidationError, orjson.JSONDecodeError) as exc:
        problems.append(f"ingest stats not answered or unreadable: {exc!r}"[:300])
        return None


async def _served(nc: Client, problems: list[str]) -> dict[str, Served]:
    """Every analytics shard's served list; {} (and a problem) when the bucket cannot be read."""
    try:
        return await read_served(nc.jetstream())
    except (NatsError, TimeoutError) as exc:
        problems.append(f"served lists not readable: {exc!r}"[:300])
        return {}


def _symbol_shards(
    services: list[ServiceStatus], shards: dict[str, tuple[str, ...]], served: dict[str, Served]
) -> dict[str, str | None]:
    """Each known symbol and the shard that owns it: from the running services, the served lists, then the local
    manifests."""
    owners: dict[str, str | None] = {}
    for name, symbols in shards.items():
        for symbol in symbols:
            owners[symbol] = name
    for name, listed in served.items():
        for symbol in listed.symbols:
            owners[symbol] = name
    for service in services:
        shard = service.metadata.get("shard")
        for symbol in filter(None, service.metadata.get("symbols", "").split(",")):
            if not is_instrument(symbol) or market_of_all(symbol) is not None:  # `ALL`, `um:ALL`: none named here
                continue
            if shard is not None or symbol not in owners:
                owners[symbol] = shard
    return owners


async def _symbol_status(
    nc: Client, tape: TapeClient, symbol: str, shard: str | None, disk: dict[str, int], problems: list[str]
) -> SymbolStatus:
    row: dict[str, Any] = {"symbol": symbol, "shard": shard, "trade_count": None}
    row["disk_bytes"] = disk.get(shard) if shard is not None else None
    try:
        coverage = await tape.query("coverage", symbol)
        row.update(
            trade_count=coverage.trade_count,
            first_time=coverage.first_time,
            last_time=coverage.last_time,
            stored_gaps=len(coverage.gaps),
            missing_count=coverage.missing_count,
        )
    except (TapeUnavailable, ClientQueryError) as exc:
        problems.append(f"{symbol}: coverage not answered: {exc}")
    try:
        row["open_gaps"] = len(await open_gaps(nc.jetstream(), symbol))
    except (NatsError, TimeoutError, LedgerFormatError) as exc:
        problems.append(f"{symbol}: ingest ledger not readable: {exc!r}")
    return SymbolStatus(**row)


def _disk_bytes(path: Path) -> int:
    total = 0
    for file in path.rglob("*"):
        with contextlib.suppress(OSError):
            if file.is_file():
                total += file.stat().st_size
    return total


def _now_ms() -> int:
    return int(time.time() * 1000)
