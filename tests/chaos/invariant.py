"""The invariant every chaos scenario ends on: the tape equals the exchange, once, and everything answers.

For every instrument (`ETHUSDT`, `um:ETHUSDT`: its subjects, and the simulator's REST of its
market), once settled: the agg ids the shard's RocksDB holds, as trades or voids (read as a
secondary, counted raw so a row kept twice would count twice) are exactly the simulator's
history from the first id stored at warm-up up to the simulator's newest id when the check
began, each once, with the same price, quantity, time and side (prices and quantities compared
in units of 1e-8: Binance's eight decimals, so equal units are equal decimal strings);
`coverage` over NATS reports no gap and ingest no open gap; every service answers
`$SRV.PING` and every analytics replica a query.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from tests.cluster.test_scale_out import exchange_history
from tests.cluster.topology import agg_trades_url
from tests.harness import request
from tradetape.bus.subjects import query_subject
from tradetape.domain.columns import TradeColumns
from tradetape.runtime.metrics import discover
from tradetape.store.codec import decode_windows
from tradetape.store.keys import SUMMARY, VOID, WINDOW, kind_prefix, prefix_end
from tradetape.store.reader import SecondaryStore
from tradetape.store.reads import read_all_trades
from tradetape.store.rocks import scan
from tradetape.store.segments import SEGMENT_MS, SegmentSummary
from tradetape.store.voids import read_voids

SETTLE_S = 90.0
"""At most this long for gap fills and the stream backlog to land after a scenario."""
SERVICES = {"tradetape-persist": 1, "tradetape-analytics": 2, "tradetape-ingest": 1}


@dataclass(frozen=True)
class SymbolCheck:
    symbol: str
    first_id: int
    last_id: int
    compared: int
    stored: int
    raw: int
    settle_s: float


async def coverage(client: Client, symbol: str, timeout: float = 5.0) -> dict[str, Any]:
    reply, _ = await request(client, query_subject("coverage", symbol), {}, timeout=timeout)
    return reply


def exchange_newest(rest_url: str, symbol: str) -> int:
    """The newest agg id the simulator has released (REST without `fromId`: the most recent)."""
    with urllib.request.urlopen(agg_trades_url(rest_url, symbol, limit=1), timeout=10) as response:
        rows = orjson.loads(response.read())
    assert rows, f"the simulator has no trades of {symbol}"
    return int(rows[-1]["a"])


def stored_raw(shard_dir: Path, symbol: str) -> tuple[TradeColumns, int]:
    """The shard's rows of `symbol` (trades and voids), and how many entries its segments, windows and void
    records hold, counted raw."""
    store = SecondaryStore(shard_dir)
    try:
        db = store.catch_up()
        summaries, windows, voids = (kind_prefix(kind, symbol) for kind in (SUMMARY, WINDOW, VOID))
        raw = sum(SegmentSummary.decode(v).trade_count for _, v in scan(db, summaries, prefix_end(summaries)))
        for prefix in (windows, voids):  # a void record has the window encoding
            raw += sum(len(decode_windows([v])) for _, v in scan(db, prefix, prefix_end(prefix)))
        return TradeColumns.concat([read_all_trades(db, symbol), read_voids(db, symbol, None, SEGMENT_MS)]), raw
    finally:
        store.close()


async def settled(client: Client, symbol: str, newest: int, deadline: float) -> dict[str, Any]:
    """The coverage reply once the tape reaches `newest` without a gap or an open ingest gap."""
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await coverage(client, symbol)
        except (NoRespondersError, NatsTimeoutError) as exc:
            last = exc
        else:
            held = last.get("trade_count", 0) + last.get("void_count", 0)
            complete = held == last.get("last_id", 0) - last.get("first_id", 0) + 1
            if last.get("last_id", 0) >= newest and not last.get("gaps") and complete and last.get("ingest_gaps") == []:
                return last
        await asyncio.sleep(0.5)
    raise AssertionError(f"{symbol} did not settle up to agg id {newest}; last coverage {last!r}")


def compare(symbol: str, stored: TradeColumns, raw: int, expected: TradeColumns, first_id: int, newest: int) -> int:
    """Assert the stored trades are the expected ones, each once; how many were compared."""
    ids = stored.agg_id
    assert raw == len(ids), f"{symbol}: {raw} stored entries for {len(ids)} agg ids: some trade is stored twice"
    assert len(ids) and int(ids[0]) == first_id, f"{symbol}: the tape starts at {ids[:1]}, not {first_id}"
    assert bool((np.diff(ids) == 1).all()), f"{symbol}: stored agg ids are not consecutive"
    head = stored.agg_id <= newest
    mine = TradeColumns(*(column[head] for column in stored.arrays()))
    assert np.array_equal(mine.agg_id, expected.agg_id), f"{symbol}: agg ids differ from the simulator's history"
    for name in ("price", "qty", "first_id", "last_id", "time", "buyer_maker"):
        got, want = getattr(mine, name), getattr(expected, name)
        bad = np.flatnonzero(got != want)
        where = int(bad[0]) if len(bad) else 0
        assert not len(bad), f"{symbol}: {name} differs at agg id {mine.agg_id[where]}: {got[where]} != {want[where]}"
    return len(mine)


async def services_answer(client: Client, symbols: tuple[str, ...], expected: dict[str, int]) -> dict[str, int]:
    """Every service instance answers `$SRV.PING`; every symbol a query (so each replica is asked)."""
    deadline = time.monotonic() + 30
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        pings = await discover(client, "PING", wait=1.0)
        counts = {name: sum(1 for p in pings if p.get("name") == name) for name in expected}
        if counts == expected:
            break
    assert counts == expected, f"services answering $SRV.PING {counts}, expected {expected}"
    for symbol in symbols:
        for _ in range(4):
            reply = await answered(client, query_subject("coverage", symbol), {})
            assert reply.get("symbol") == symbol, reply
    return counts


async def answered(client: Client, subject: str, body: dict[str, Any], within_s: float = 30.0) -> dict[str, Any]:
    """A reply other than `overloaded`: the flood may still be running while the invariant asks, and a
    replica's bounded queue answering `overloaded` is the answer it owes then; asked again for `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        reply, _ = await request(client, subject, body, timeout=5.0)
        if reply.get("error", {}).get("code") != "overloaded" or time.monotonic() > deadline:
            return reply
        await asyncio.sleep(0.2)


async def exact_strings(client: Client, rest_url: str, symbol: str, from_id: int, newest: int) -> int:
    """The `trades` query's price and quantity strings against the simulator's, from `from_id` to `newest`."""
    page = [row for row in await asyncio.to_thread(_rest_page, rest_url, symbol, from_id) if row["a"] <= newest]
    start = min(row["T"] for row in page)
    body = {"start": start, "end": max(r["T"] for r in page) + 1, "limit": 5000}
    reply = await answered(client, query_subject("trades", symbol), body)
    served = {t["a"]: t for t in reply["trades"]}
    for row in page:
        mine = served[row["a"]]
        assert (Decimal(mine["p"]), Decimal(mine["q"])) == (Decimal(row["p"]), Decimal(row["q"])), (mine, row)
    return len(page)


def _rest_page(rest_url: str, symbol: str, from_id: int) -> list[dict[str, Any]]:
    url = agg_trades_url(rest_url, symbol, fromId=from_id, limit=500)
    with urllib.request.urlopen(url, timeout=10) as response:
        page: list[dict[str, Any]] = orjson.loads(response.read())
    return page


async def check_invariant(
    client: Client,
    rest_url: str,
    shard_dir: Path,
    first_ids: dict[str, int],
    scenario: str,
    *,
    services: dict[str, int] | None = None,
    settle_s: float = SETTLE_S,
) -> list[SymbolCheck]:
    """Assert the invariant for every symbol; prints and returns the counts compared."""
    began = time.monotonic()
    deadline = began + settle_s
    checks: list[SymbolCheck] = []
    for symbol, first_id in first_ids.items():
        newest = await asyncio.to_thread(exchange_newest, rest_url, symbol)
        await settled(client, symbol, newest, deadline)
        stored, raw = await asyncio.to_thread(stored_raw, shard_dir, symbol)
        expected = await asyncio.to_thread(exchange_history, rest_url, symbol, first_id, newest)
        compared = compare(symbol, stored, raw, expected, first_id, newest)
        await exact_strings(client, rest_url, symbol, max(first_id, newest - 499), newest)
        checks.append(
            SymbolCheck(symbol, first_id, newest, compared, len(stored), raw, round(time.monotonic() - began, 1))
        )
    answering = await services_answer(client, tuple(first_ids), services or SERVICES)
    print(f"[{scenario}] invariant holds: services {answering}")
    for c in checks:
        print(
            f"[{scenario}]   {c.symbol}: simulator's {c.compared} trades {c.first_id}..{c.last_id} == stored, "
            f"exact; {c.stored} agg ids stored in all, {c.raw} raw entries; settled after {c.settle_s}s"
        )
    return checks
