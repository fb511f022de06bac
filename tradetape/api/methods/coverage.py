"""`coverage`: how many trades the tape holds over a range, and which agg ids are missing.

Agg ids are consecutive per symbol, so every hole between the first and the last id held
is a gap (`tradetape.domain.gaps`); a void (an id Binance invalidated) is held, not a gap,
and counted in `void_count`, never in `trade_count`. Without a range it covers the whole tape. A source
that keeps a completeness index (the shard's store) answers from it without reading
trades; any other source is summarised from its trades. Beside what the store holds, the
reply carries the gaps ingest still has open in its ledger (ids it knows are missing and
keeps asking REST for), as they stand now, whatever the range: the analytics service
reads them from NATS KV before answering (`ingest_gaps` is None when it cannot).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import polars as pl
from pydantic import BaseModel

from tradetape.api.models import RangeRequest
from tradetape.api.query_method import QueryMethod, TradeSource
from tradetape.bus.ledger import LedgerGap
from tradetape.domain.gaps import Coverage, coverage


@runtime_checkable
class CoverageSource(Protocol):
    """A source that answers coverage itself (`tradetape.store.reader.ShardReader`)."""

    def coverage(self, symbol: str, time_range: tuple[int, int] | None) -> Coverage: ...


@runtime_checkable
class IngestGapSource(Protocol):
    """A source that also knows ingest's open gaps (the analytics service, from the ledger)."""

    def ingest_gaps(self, symbol: str) -> list[LedgerGap] | None: ...


class CoverageRequest(RangeRequest):
    pass


class GapReply(BaseModel):
    from_id: int
    to_id: int


class IngestGapReply(GapReply):
    opened_ms: int
    """When ingest first saw the ids missing (epoch ms)."""
    age_s: float
    attempts: int
    """REST fetches tried so far."""
    last_error: str


class CoverageReply(BaseModel):
    symbol: str
    start: int | None
    end: int | None
    trade_count: int
    first_id: int | None
    last_id: int | None
    first_time: int | None
    last_time: int | None
    missing_count: int
    gaps: list[GapReply]
    void_count: int = 0
    """Agg ids held as voids (Binance's invalidated duplicates): in the id sequence, not in `trade_count`."""
    ingest_gaps: list[IngestGapReply] | None = None
    """Gaps ingest's ledger has open now (retried until filled); None when the ledger was not reachable."""

    def to_polars(self) -> pl.DataFrame:
        """The gaps as a DataFrame of inclusive `from_id`, `to_id`."""
        return pl.DataFrame([gap.model_dump() for gap in self.gaps], schema={"from_id": pl.Int64, "to_id": pl.Int64})


def handle(source: TradeSource, symbol: str, request: CoverageRequest, now_ms: int) -> CoverageReply:
    time_range = request.time_range(now_ms, default_ms=None)
    if isinstance(source, CoverageSource):
        found = source.coverage(symbol, time_range)
    else:
        trades = source.trades(symbol, time_range)
        found = coverage(trades.agg_id, trades.time)
    return CoverageReply(
        symbol=symbol,
        start=time_range[0] if time_range else None,
        end=time_range[1] if time_range else None,
        trade_count=found.trade_count,
        first_id=found.first_id,
        last_id=found.last_id,
        first_time=found.first_time,
        last_time=found.last_time,
        missing_count=sum(to_id - from_id + 1 for from_id, to_id in found.gaps),
        gaps=[GapReply(from_id=from_id, to_id=to_id) for from_id, to_id in found.gaps],
        void_count=found.void_count,
        ingest_gaps=_ingest_gaps(source, symbol, now_ms),
    )


def _ingest_gaps(source: TradeSource, symbol: str, now_ms: int) -> list[IngestGapReply] | None:
    gaps = source.ingest_gaps(symbol) if isinstance(source, IngestGapSource) else None
    if gaps is None:
        return None
    return [
        IngestGapReply(
            from_id=gap.from_id,
            to_id=gap.to_id,
            opened_ms=gap.opened_ms,
            age_s=round(gap.age_ms(now_ms) / 1000, 1),
            attempts=gap.attempts,
            last_error=gap.last_error,
        )
        for gap in gaps
    ]


METHOD = QueryMethod(
    name="coverage",
    summary="Trades held, first and last ids and times, and the missing agg-id ranges",
    request=CoverageRequest,
    reply=CoverageReply,
    handler=handle,
    bounded_range=False,
    reads_ingest_ledger=True,
)
