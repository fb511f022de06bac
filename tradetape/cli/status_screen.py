"""The screen of `tradetape status`: a `SystemStatus` as rich text and tables, once or refreshed by `--watch`."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text

from tradetape.api.times import iso_time
from tradetape.cli.tables import table
from tradetape.status import SystemStatus, TailProbeStatus


def render(status: SystemStatus) -> RenderableType:
    """The status screen: NATS, the stream and its consumers, the services, the symbols."""
    nats = status.nats
    parts: list[RenderableType] = [Text.assemble(("tradetape status", "bold"), f"  {iso_time(status.collected_at)}")]
    if not nats.reachable:
        parts.append(Text(f"NATS {nats.url}: unreachable ({nats.error})", style="red"))
        return Group(*parts)
    parts.append(
        Text(f"NATS {nats.url}: reachable, connected to {nats.connected_to} (nats-server {nats.server_version})")
    )
    stream = status.stream
    if stream is not None:
        line = f"stream {stream.name}: {stream.messages} messages, {_size(stream.bytes)}"
        if stream.replicas > 1:
            line += f"  replicas {stream.replicas} ({stream.replicas_current} current besides the leader)"
        if stream.cluster:
            line += f"  cluster {stream.cluster} leader {stream.leader}"
        parts.append(Text(line))
        consumers = table(
            "consumer",
            "lag (pending)",
            "ack pending",
            "redelivered",
            right=("lag (pending)", "ack pending", "redelivered"),
        )
        for c in stream.consumers:
            consumers.add_row(c.name, str(c.pending), str(c.ack_pending), str(c.redelivered))
        parts.append(consumers)
    services = table(
        "service",
        "instance",
        "version",
        "uptime",
        "shard",
        "symbols",
        "requests",
        "errors",
        right=("uptime", "requests", "errors"),
    )
    served = {listed.shard: f"{listed.symbols} served" for listed in status.served}
    for s in status.services:
        shard = s.metadata.get("shard", "")
        services.add_row(
            s.name,
            s.id[:8],
            s.version,
            _duration(s.uptime_s),
            shard,
            _symbols(s.metadata["symbols"]) if "symbols" in s.metadata else served.get(shard, ""),
            str(s.requests),
            str(s.errors),
        )
    parts.append(Text(f"services: {len(status.services)} answered $SRV.PING", style="" if status.services else "red"))
    parts.append(services)
    if status.tail_probe is not None:
        parts.append(Text(_tail_probe_line(status.tail_probe)))
    symbols = table(
        "symbol",
        "shard",
        "stored",
        "from",
        "to",
        "stored gaps",
        "open gaps",
        "shard disk",
        right=("stored", "stored gaps", "open gaps", "shard disk"),
    )
    for row in status.symbols:
        symbols.add_row(
            row.symbol,
            row.shard or "-",
            _count(row.trade_count),
            iso_time(row.first_time),
            iso_time(row.last_time),
            _count(row.stored_gaps),
            _count(row.open_gaps),
            "-" if row.disk_bytes is None else _size(row.disk_bytes),
        )
    parts.append(symbols)
    parts += [Text(f"! {problem}", style="yellow") for problem in status.problems]
    return Group(*parts)


def _tail_probe_line(probe: TailProbeStatus) -> str:
    return (
        f"ingest tail probe: a lost last trade is found within {_duration(probe.found_within_s)} "
        f"({probe.symbols} symbols, {probe.quiet} quiet now; probed after {probe.after_s:g} s quiet, "
        f"one every {probe.interval_s:g} s); {probe.probes} probes, {probe.found_trades} trades found, "
        f"{probe.failures} failed"
    )


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _symbols(text: str, shown: int = 4) -> str:
    names = [s for s in text.split(",") if s]
    return ",".join(names) if len(names) <= shown else ",".join(names[:shown]) + f" +{len(names) - shown}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = int(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}d{hours:02d}h" if days else f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _size(value: int) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
