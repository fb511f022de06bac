"""The simulator's own history as data.binance.vision serves it: daily and monthly aggTrades zips.

``/data/spot/daily/aggTrades/<SYM>/<SYM>-aggTrades-<YYYY-MM-DD>.zip`` (and ``monthly``
with ``<YYYY-MM>``) hold a header-less CSV of ``aggTradeId, price, qty, firstTradeId,
lastTradeId, timestamp (µs), isBuyerMaker, isBestMatch``; the futures markets' under
``/data/futures/um/`` and ``/data/futures/cm/`` a CSV with a header row
(``agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker``)
and ms timestamps, as Binance writes them. Each has a ``.CHECKSUM``
beside it (``<sha256>  <file name>``). Like Binance, a period is published once it has
ended and only if it has trades; anything else is a 404, as is a period whose oldest
trades the exchange no longer holds (trimmed by its retention): it never serves a part. A ``Range: bytes=N-`` request
gets the rest of the file (206), so downloads can resume. The fault `corrupt_checksum`
(a day or a month) makes that period's checksum wrong. Written here, from the trades
the exchange released, not with the importer's code, so the two check each other.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import re
import zipfile
from collections.abc import Mapping
from datetime import UTC, datetime
from http import HTTPStatus

from tradetape.domain.instruments import Market
from tradetape.services.exchange.history import AggTrade, TradeHistory, now_ms
from tradetape.services.exchange.markets import DUMP_HEADER, WIRES, MarketWire
from tradetape.services.exchange.rest import RestResponse

_FILE = r"/aggTrades/([A-Z0-9_]+)/([A-Z0-9_]+)-aggTrades-({period})\.zip(\.CHECKSUM)?$"
_DAILY = _FILE.format(period=r"\d{4}-\d{2}-\d{2}")
_MONTHLY = _FILE.format(period=r"\d{4}-\d{2}")
_NOT_FOUND = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchKey</Code></Error>"
_ZIP_TYPE = "application/zip"
_MAX_TRADES = 10_000_000


def period_bounds(period: str) -> tuple[int, int]:
    """``2026-01-01`` or ``2026-01`` → its ``[start, end)`` in epoch ms, UTC."""
    if len(period) == 10:
        start = datetime.strptime(period, "%Y-%m-%d").replace(tzinfo=UTC)
        return int(start.timestamp() * 1000), int(start.timestamp() * 1000) + 86_400_000
    start = datetime.strptime(period, "%Y-%m").replace(tzinfo=UTC)
    days = calendar.monthrange(start.year, start.month)[1]
    return int(start.timestamp() * 1000), int(start.timestamp() * 1000) + days * 86_400_000


def spot_row(trade: AggTrade) -> str:
    """A spot dump's row, without its line end."""
    t = trade
    return f"{t.agg_id},{t.price},{t.qty},{t.first_id},{t.last_id},{t.time_ms * 1000},{t.buyer_maker},True"


def dump_csv(trades: list[AggTrade], wire: MarketWire = WIRES[Market.SPOT]) -> bytes:
    """A dump's CSV as `wire`'s market writes it (spot: no header, µs, isBestMatch; futures: a header, ms)."""
    if not wire.futures:
        return "".join(spot_row(t) + "\n" for t in trades).encode()
    rows = (
        f"{t.agg_id},{t.price},{t.qty},{t.first_id},{t.last_id},{t.time_ms},{str(t.buyer_maker).lower()}\n"
        for t in trades
    )
    return (DUMP_HEADER + "".join(rows)).encode()


def dump_zip(csv_name: str, trades: list[AggTrade], wire: MarketWire = WIRES[Market.SPOT]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(csv_name, dump_csv(trades, wire))
    return buffer.getvalue()


def checksum_line(body: bytes, name: str) -> bytes:
    return f"{hashlib.sha256(body).hexdigest()}  {name}\n".encode()


class DumpArchive:
    """Builds each period's zip once (a finished period does not change) and answers requests for it."""

    def __init__(self) -> None:
        self._built: dict[str, bytes] = {}

    def handle(
        self,
        path: str,
        range_header: str | None,
        wire: MarketWire,
        histories: Mapping[str, TradeHistory],
        corrupt_checksum: str = "",
    ) -> RestResponse:
        """A dump of `wire`'s market (`histories` by its symbols), its checksum, or a 404."""
        below = path.removeprefix(wire.dump_prefix)
        match = re.match(f"^daily{_DAILY}", below) or re.match(f"^monthly{_MONTHLY}", below)
        if match is None or match.group(1) != match.group(2) or match.group(1) not in histories:
            return _missing()
        symbol, period, is_checksum = match.group(1), match.group(3), bool(match.group(4))
        try:
            start, end = period_bounds(period)
        except ValueError:
            return _missing()
        trimmed = histories[symbol].trimmed_through_ms
        if end > now_ms() or (trimmed is not None and trimmed >= start):
            return _missing()
        zip_name = f"{symbol}-aggTrades-{period}.zip"
        key = f"{wire.market}/{zip_name}"
        body = self._built.get(key)
        if body is None:
            trades = histories[symbol].between(start, end - 1, _MAX_TRADES)
            if not trades:
                return _missing()
            body = self._built[key] = dump_zip(f"{symbol}-aggTrades-{period}.csv", trades, wire)
        if is_checksum:
            line = checksum_line(body + (b"corrupt" if corrupt_checksum == period else b""), zip_name)
            return RestResponse(HTTPStatus.OK, line, content_type="text/plain")
        return _ranged(body, range_header)


def _missing() -> RestResponse:
    return RestResponse(HTTPStatus.NOT_FOUND, _NOT_FOUND, content_type="application/xml")


def _ranged(body: bytes, range_header: str | None) -> RestResponse:
    match = re.fullmatch(r"bytes=(\d+)-", (range_header or "").strip())
    if match is None:
        return RestResponse(HTTPStatus.OK, body, (("Accept-Ranges", "bytes"),), _ZIP_TYPE)
    offset = int(match.group(1))
    if offset >= len(body):
        headers: tuple[tuple[str, str], ...] = (("Content-Range", f"bytes */{len(body)}"),)
        return RestResponse(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, b"", headers, _ZIP_TYPE)
    headers = (("Content-Range", f"bytes {offset}-{len(body) - 1}/{len(body)}"), ("Accept-Ranges", "bytes"))
    return RestResponse(HTTPStatus.PARTIAL_CONTENT, body[offset:], headers, _ZIP_TYPE)
