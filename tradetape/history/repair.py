"""Closing the store's gaps: the completeness index says which agg ids are missing, REST or the dumps have them.

A gap can outlive ingest's own ledger (persist down longer than the stream keeps
messages, trades deleted by hand, an import cut short): `repair` asks the index for the
gaps of an instrument (over a time range, or the whole tape), pages its market's `GET
aggTrades?fromId=` (``/api/v3``, ``/fapi/v1``, ``/dapi/v1``: `RestClient.of`) through each
within that market's REST weight budget, validates every
row with the shared `parse_trade`, and imports what it gets through the same route as
`tradetape import` (the running persist, or the store directly), so it is safe while
everything runs. A large gap (`dump_min_ids` or more) in days already over is first taken
from those days' dumps (`tradetape.history.fetch`: a day of BTCUSDT is one download
instead of ~2,300 REST calls), which add only the missing ids; REST fills what is left.
A gap neither can fill (an error, or fewer trades than the gap holds) stays open and is
reported with the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from tradetape.binance.rest import PAGE_LIMIT, GapFillError, RestClient
from tradetape.domain.columns import TradeColumns
from tradetape.domain.id_runs import IdRuns
from tradetape.domain.instruments import check_instrument, market_of
from tradetape.domain.trade import TradeRow
from tradetape.errors import RequestError
from tradetape.history.fetch import HistoryFetcher
from tradetape.history.load import Progress, TapeImporter

logger = logging.getLogger(__name__)

IMPORT_EVERY = 50_000
"""Trades fetched before they are written (one import each)."""
DUMP_MIN_IDS = 100_000
"""Gaps at least this large, in past days, are fetched from the daily dumps first."""


@dataclass
class RepairReport:
    symbol: str
    gaps: list[tuple[int, int]] = field(default_factory=list)
    """The gaps found before repairing."""
    closed: list[tuple[int, int]] = field(default_factory=list)
    still_open: list[tuple[int, int, str]] = field(default_factory=list)
    """Gaps (or their remainders) left open, with the reason."""
    fetched: int = 0
    added: int = 0
    from_dumps: int = 0
    """Trades added from daily dumps."""


async def repair(
    importer: TapeImporter,
    rest: RestClient,
    symbol: str,
    gaps: list[tuple[int, int]],
    progress: Progress | None = None,
    *,
    fetcher: HistoryFetcher | None = None,
    dump_min_ids: int = DUMP_MIN_IDS,
) -> RepairReport:
    """Fill `gaps` (inclusive agg-id ranges, from the index) from dumps and REST; what closed and what did not."""
    market = market_of(check_instrument(symbol))
    if market is not rest.market:  # another market's ids would fetch that market's trades
        raise RequestError(
            f"repair {symbol}: {symbol} is not a {rest.market.value} instrument, the market this REST client "
            f"asks ({rest.api.agg_trades_path}); use `RestClient.of(settings, Market.{market.name})`"
        )
    report = RepairReport(symbol, list(gaps))
    reasons: dict[tuple[int, int], str] = {}
    for gap in gaps:
        parts = [gap]
        if fetcher is not None and gap[1] - gap[0] + 1 >= dump_min_ids:
            report.from_dumps += await _from_dumps(importer, fetcher, symbol, gap)
            parts = _missing(importer.stored_runs(symbol), *gap)
        for from_id, to_id in parts:
            reason = await _from_rest(importer, rest, symbol, from_id, to_id, report, progress)
            if reason:
                reasons[gap] = reason
    runs = importer.stored_runs(symbol)
    for from_id, to_id in gaps:
        left = _missing(runs, from_id, to_id)
        if not left:
            report.closed.append((from_id, to_id))
        for low, high in left:
            report.still_open.append((low, high, reasons.get((from_id, to_id), "still missing after the fill")))
    logger.info(
        "repair",
        extra={
            "symbol": symbol,
            "gaps": len(gaps),
            "closed": len(report.closed),
            "open": len(report.still_open),
            "fetched": report.fetched,
            "added": report.added,
            "from_dumps": report.from_dumps,
        },
    )
    return report


async def _from_dumps(importer: TapeImporter, fetcher: HistoryFetcher, symbol: str, gap: tuple[int, int]) -> int:
    """The dumps of the days the gap spans, if they are over; the trades they added."""
    times = importer.gap_times(symbol, *gap)
    if times is None:
        return 0
    first, last = (datetime.fromtimestamp(t / 1000, UTC).date() for t in times)
    if last >= datetime.now(UTC).date():
        return 0  # today's dump is not published yet
    fetched = await fetcher.fetch(symbol, first, last, again=True)
    return sum(result.added for result in fetched.imported)


async def _from_rest(
    importer: TapeImporter,
    rest: RestClient,
    symbol: str,
    from_id: int,
    to_id: int,
    report: RepairReport,
    progress: Progress | None,
) -> str:
    """Page REST through ``[from_id, to_id]`` into the store; why it stopped short ("" if it did not)."""
    pending: list[TradeRow] = []
    start = from_id
    reason = ""
    try:
        while start <= to_id:
            limit = min(PAGE_LIMIT, to_id - start + 1)
            page = await rest.agg_trades(symbol, start, limit)
            rows = [row for _, row in page if row.agg_id <= to_id]
            pending += rows
            report.fetched += len(rows)
            if len(pending) >= IMPORT_EVERY:
                report.added += await _write(importer, symbol, pending, progress)
                pending = []
            if len(page) < limit or not rows:
                reason = f"REST answered {len(page)} of {limit} trades from id {start}"
                break
            start = rows[-1].agg_id + 1
    except GapFillError as exc:
        reason = f"REST failed: {exc.reason}"
    report.added += await _write(importer, symbol, pending, progress)
    return reason


async def _write(importer: TapeImporter, symbol: str, rows: list[TradeRow], progress: Progress | None) -> int:
    if not rows:
        return 0
    result = await importer.import_trades(symbol, "rest", TradeColumns.from_rows(rows), progress)
    return result.added


def _missing(runs: IdRuns, from_id: int, to_id: int) -> list[tuple[int, int]]:
    """The ids of ``[from_id, to_id]`` the runs do not hold, as inclusive ranges."""
    edges = IdRuns.of_ids(np.array([from_id - 1, to_id + 1], dtype=np.int64))
    return runs.clip(from_id, to_id).union(edges).gaps()
