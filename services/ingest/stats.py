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
    from tradetape.bus.publish.publisher import Publisher
    from tradetape.bus.replies import ReplyGuard
    from tradetape.domain.instruments import Market
    from tradetape.services.ingest.arrival import ArrivalLags
    from tradetape.services.ingest.feed import Feed
    from tradetape.services.ingest.lanes import MarketLane
    from tradetape.services.ingest.tape import SymbolTape

logger = logging.getLogger(__name__)


class IngestState(Protocol):
    """What the stats book reads of the ingest service: the service uses the book, so the book names no service."""

    @property
    def tapes(self) -> dict[str, SymbolTape]: ...

    @property
    def feeds(self) -> list[Feed]: ...

    @property
    def lanes(self) -> dict[Market, MarketLane]: ...

    @property
    def unknown_deadletters(self) -> Counter[str]: ...

    @property
    def publisher(self) -> Publisher: ...

    @property
    def connected(self) -> bool: ...

    @property
    def replies(self) -> ReplyGuard: ...

    @property
    def arrival(self) -> ArrivalLags: ...


class StatsBook:
    def __init__(self, service: IngestState, tail_probe_after_s: float) -> None:
        self._service = service
        self._after_s = tail_probe_after_s
        self._progress = ProgressLog(logger)
        self._last_published = 0
        self._last_at = time.monotonic()

    def symbol_stats(self, symbol: str, now_ms: int, *, with_gaps: bool = True) -> dict[str, Any]:
        service = self._service
        tape = service.tapes[symbol]
        c = tape.counters
        gaps = tape.open_gaps()
        feed = next((f for f in service.feeds if symbol in f.instruments), None)
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
            "rest": self.rest(),
            "tail_probe": self.tail_probe(),
            "markets": {
                str(market): {"rest": self.rest(lane), "tail_probe": self.tail_probe(lane)}
                for market, lane in service.lanes.items()
            },
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

    def rest(self, lane: MarketLane | None = None) -> dict[str, int]:
        """REST use of one market's lane, or summed over every market (each has its own budget)."""
        clients = [lane.rest] if lane is not None else [each.rest for each in self._service.lanes.values()]
        return {
            "weight_used": sum(c.budget.used for c in clients),
            "calls": sum(c.calls for c in clients),
            "failures": sum(c.failures for c in clients),
        }

    def tail_probe(self, lane: MarketLane | None = None) -> dict[str, Any]:
        """The tail probe's pace and findings, and the bound on finding a lost last trade with every symbol quiet.

        Without a lane: every market's together (their probes run side by side, so the bound is the
        slowest market's, and `interval_s` the longest).
        """
        lanes = [lane] if lane is not None else list(self._service.lanes.values())
        now = time.monotonic()
        bounds = [each.filler.probes.found_within_s(len(each.tapes)) for each in lanes]
        counters = [each.filler.probe_counters for each in lanes]
        return {
            "after_s": self._after_s,
            "interval_s": round(max((each.filler.probes.interval_s for each in lanes), default=0.0), 3),
            "symbols": sum(len(each.tapes) for each in lanes),
            "quiet": sum(each.filler.probes.quiet(now) for each in lanes),
            "found_within_s": round(max(bounds, default=0.0), 1),
            "probes": sum(c.probes for c in counters),
            "found_probes": sum(c.found_probes for c in counters),
            "found_trades": sum(c.found for c in counters),
            "failures": sum(c.failures for c in counters),
        }

    async def metrics(self) -> ServiceSnapshot:
        """The same counters as a metrics snapshot: ready once connected to NATS with the feeds built."""
        service = self._service
        tapes = list(service.tapes.values())
        errors: Counter[str] = Counter(service.unknown_deadletters)
        for tape in tapes:
            errors.update(tape.counters.deadletters)
        errors["rest_failure"] = self.rest()["failures"]
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
            "rest_weight": sum(lane.rest.budget.used for lane in service.lanes.values()),
            "tail_probes": sum(lane.filler.probe_counters.probes for lane in service.lanes.values()),
            "tail_found": sum(lane.filler.probe_counters.found for lane in service.lanes.values()),
            "buffered": service.publisher.buffered,
            **service.arrival.summary(),
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
