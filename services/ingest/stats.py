"""Ingest's visibility: per-symbol counters as a stats reply, and one summary log line per interval."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Protocol

from tradetape.runtime.logs import ProgressLog
from tradetape.runtime.metrics import ServiceSnapshot

if TYPE_CHECKING:
    from tradetape.binance.rest import RestClient
    from tradetape.bus.publish.publisher import Publisher
    from tradetape.bus.replies import ReplyGuard
    from tradetape.services.ingest.feed import Feed
    from tradetape.services.ingest.filler import GapFiller
    from tradetape.services.ingest.tape import SymbolTape

logger = logging.getLogger(__name__)


class IngestState(Protocol):
    """What the stats book reads of the ingest service: the service uses the book, so the book names no service."""

    @property
    def tapes(self) -> dict[str, SymbolTape]: ...

    @property
    def feeds(self) -> list[Feed]: ...

    @property
    def rest(self) -> RestClient: ...

    @property
    def unknown_deadletters(self) -> Counter[str]: ...

    @property
    def publisher(self) -> Publisher: ...

    @property
    def filler(self) -> GapFiller: ...

    @property
    def connected(self) -> bool: ...

    @property
    def replies(self) -> ReplyGuard: ...


class StatsBook:
    def __init__(self, service: IngestState) -> None:
        self._service = service
        self._progress = ProgressLog(logger)
        self._last_published = 0
        self._last_at = time.monotonic()

    def symbol_stats(self, symbol: str, now_ms: int, *, with_gaps: bool = True) -> dict[str, Any]:
        service = self._service
        tape = service.tapes[symbol]
        c = tape.counters
        gaps = tape.open_gaps()
        feed = next((f for f in service.feeds if symbol in f.symbols), None)
        return {
            "published": c.published,
            "stream_duplicates": c.stream_duplicates,
            "duplicates_dropped": c.duplicates,
            "backfilled": c.backfilled,
            "gaps_opened": c.gaps_opened,
            "gaps_closed": c.gaps_closed,
            "gaps_abandoned": c.gaps_abandoned,
            "gaps_open": len(gaps),
            "missing": sum(g.count for g in gaps),
            "oldest_gap_age_ms": max((g.age_ms(now_ms) for g in gaps if g.opened_ms), default=0),
            "buffer_dropped": c.buffer_dropped,
            "deadletters": dict(c.deadletters),
            "reconnects": feed.reconnects if feed else 0,
            "watermark": tape.watermark,
            "head": tape.head if tape.watermark is not None else None,
            "gaps": [
                {"from_id": g.from_id, "to_id": g.to_id, "age_ms": g.age_ms(now_ms), "attempts": g.attempts}
                for g in gaps[: 100 if with_gaps else 0]
            ],
        }

    def snapshot(self, symbol: str | None = None, *, with_gaps: bool = True) -> dict[str, Any]:
        """The stats reply: every symbol's counters (or one), plus the process-wide figures."""
        service = self._service
        now = time.time_ns() // 1_000_000
        if symbol is None:
            symbols = list(service.tapes)
        else:  # a symbol ingest does not have: the process-wide figures alone (what `tradetape status` asks)
            symbols = [symbol] if isinstance(symbol, str) and symbol in service.tapes else []
        publisher = service.publisher
        return {
            "symbols": {s: self.symbol_stats(s, now, with_gaps=with_gaps) for s in symbols},
            "deadletters_unknown_symbol": dict(service.unknown_deadletters),
            "rest": {
                "weight_used": service.rest.budget.used,
                "calls": service.rest.calls,
                "failures": service.rest.failures,
            },
            "tail_probe": self.tail_probe(),
            "publisher": {
                "buffered": publisher.buffered,
                "in_flight": publisher.in_flight,
                "paused": publisher.paused,
                "retried": publisher.retried,
                "fast_batches": publisher.batching,
                "batches": publisher.batches,
                "stale_acks": publisher.stale_acks,
                "dropped": publisher.dropped,
            },
            "connections": [
                {
                    "feed": f.name,
                    "streams": len(f.symbols),
                    "connections": f.connections,
                    "reconnects": f.reconnects,
                    "rotations": f.rotations,
                }
                for f in service.feeds
            ],
        }

    def tail_probe(self) -> dict[str, Any]:
        """The tail probe's pace and findings, and the bound on finding a lost last trade with every symbol quiet."""
        filler = self._service.filler
        schedule, counters = filler.probes, filler.probe_counters
        symbols = len(self._service.tapes)
        return {
            "after_s": schedule.after_s,
            "interval_s": round(schedule.interval_s, 3),
            "symbols": symbols,
            "quiet": schedule.quiet(time.monotonic()),
            "found_within_s": round(schedule.found_within_s(symbols), 1),
            "probes": counters.probes,
            "found_probes": counters.found_probes,
            "found_trades": counters.found,
            "failures": counters.failures,
        }

    async def metrics(self) -> ServiceSnapshot:
        """The same counters as a metrics snapshot: ready once connected to NATS with the feeds built."""
        service = self._service
        tapes = list(service.tapes.values())
        errors: Counter[str] = Counter(service.unknown_deadletters)
        for tape in tapes:
            errors.update(tape.counters.deadletters)
        errors["rest_failure"] = service.rest.failures
        errors.update(service.replies.errors)
        gaps = {t.symbol: t.open_gaps() for t in tapes}
        connected = service.connected
        return ServiceSnapshot(
            ready=connected and bool(service.feeds),
            reason="" if connected else "nats disconnected" if service.feeds else "starting",
            trades_in={
                t.symbol: t.counters.published + t.counters.stream_duplicates + t.counters.duplicates for t in tapes
            },
            trades_out={t.symbol: t.counters.published for t in tapes},
            errors=errors,
            open_gaps={symbol: len(g) for symbol, g in gaps.items()},
            missing_trades={symbol: sum(gap.count for gap in g) for symbol, g in gaps.items()},
            publish_backlog=service.publisher.buffered + service.publisher.in_flight,
        )

    async def log_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.log_summary("ingest progress")

    def log_summary(self, event: str, *, force: bool = False) -> None:
        """One line for the whole process, plus one per symbol that has gaps open."""
        service = self._service
        now = time.time_ns() // 1_000_000
        tapes = service.tapes.values()
        published = sum(t.counters.published for t in tapes)
        elapsed = max(time.monotonic() - self._last_at, 1e-9)
        rate = (published - self._last_published) / elapsed
        self._last_published, self._last_at = published, time.monotonic()
        open_gaps = [(t.symbol, g) for t in tapes for g in t.open_gaps()]
        fields: dict[str, object] = {
            "symbols": len(service.tapes),
            "published": published,
            "per_s": round(rate),
            "duplicates_dropped": sum(t.counters.duplicates for t in tapes),
            "gaps_open": len(open_gaps),
            "missing": sum(g.count for _, g in open_gaps),
            "oldest_gap_age_s": round(max((g.age_ms(now) for _, g in open_gaps if g.opened_ms), default=0) / 1000, 1),
            "deadletters": sum(sum(t.counters.deadletters.values()) for t in tapes)
            + sum(service.unknown_deadletters.values()),
            "reconnects": sum(f.reconnects for f in service.feeds),
            "rest_weight": service.rest.budget.used,
            "tail_probes": service.filler.probe_counters.probes,
            "tail_found": service.filler.probe_counters.found,
            "buffered": service.publisher.buffered,
        }
        self._progress.log(event, "*", fields, force=force)
        for symbol in sorted({s for s, _ in open_gaps}):
            stats = self.symbol_stats(symbol, now)
            self._progress.log(
                "ingest gaps",
                symbol,
                {
                    "symbol": symbol,
                    "gaps_open": stats["gaps_open"],
                    "missing": stats["missing"],
                    "oldest_gap_age_s": round(stats["oldest_gap_age_ms"] / 1000),
                    "watermark": stats["watermark"],
                },
                force=force,
            )
