"""`tradetape status`: the system on one screen (`--json` for scripts, `--watch N` to refresh).

Into a pipe or a file, `--watch` appends each screen whole (columns never cut), as `--json`
appends a line.

Exit codes: 0 when NATS answered, 2 when it could not be reached (the screen says so).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from tradetape.api.render import iso_time, table
from tradetape.bus.connect import resolve_nats_url
from tradetape.cli.options import add_settings
from tradetape.cli.query import console_for_stdout
from tradetape.client import TapeClient, TapeUnavailable
from tradetape.ground.redaction import redact_url
from tradetape.settings import Settings
from tradetape.status import SystemStatus, TailProbeStatus, collect_status, unreachable

EXIT_UNREACHABLE = 2


def add_status_command(parser: argparse.ArgumentParser, settings_fields: Sequence[str]) -> None:

    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    parser.add_argument("--watch", type=float, metavar="SECONDS", help="refresh every SECONDS until Ctrl-C")
    add_settings(parser, settings_fields)


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    if args.watch is not None and args.watch <= 0:
        print("tradetape status: --watch needs a positive number of seconds", file=sys.stderr)
        return EXIT_UNREACHABLE
    try:
        return asyncio.run(_watch(args, settings) if args.watch else _once(args, settings))
    except KeyboardInterrupt:
        return 0


async def read_status(settings: Settings) -> SystemStatus:
    """The status through a connection of its own; an unreachable server is a status too."""
    url = resolve_nats_url(settings)
    try:
        tape = await TapeClient.connect(settings, url=url)
    except TapeUnavailable as exc:
        return unreachable(redact_url(url), str(exc))
    async with tape:
        return await collect_status(tape.nc, settings, redact_url(url))


async def _once(args: argparse.Namespace, settings: Settings) -> int:
    status = await read_status(settings)
    if args.json:
        sys.stdout.write(status.model_dump_json(indent=2) + "\n")
    else:
        console_for_stdout().print(render(status))
    return 0 if status.nats.reachable else EXIT_UNREACHABLE


async def _watch(args: argparse.Namespace, settings: Settings) -> int:
    status = await read_status(settings)
    if args.json:  # one JSON document a line, for a pipe
        while True:
            sys.stdout.write(status.model_dump_json() + "\n")
            sys.stdout.flush()
            await asyncio.sleep(args.watch)
            status = await read_status(settings)
    if not sys.stdout.isatty():  # a pipe or a file: each screen in turn, whole (Live would print only the last)
        while True:
            console_for_stdout().print(render(status), "")
            sys.stdout.flush()
            await asyncio.sleep(args.watch)
            status = await read_status(settings)
    with Live(render(status), console=Console(), auto_refresh=False, screen=True) as live:
        while True:
            await asyncio.sleep(args.watch)
            status = await read_status(settings)
            live.update(render(status), refresh=True)


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
