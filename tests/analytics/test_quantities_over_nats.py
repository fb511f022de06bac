"""End to end over NATS from the simulator's USD-M and COIN-M tapes: ingest → JetStream → persist → RocksDB → analytics.

USD-M frames carry `nq` (the quantity without RPI orders): `quantity: "normal"` answers equal a Decimal reference over
the trades the simulator released; COIN-M bars and profiles carry base and quote volume (contract size from the
simulator's COIN-M exchangeInfo) equal to the reference; "normal" on COIN-M is `invalid_request`.
"""

from __future__ import annotations

import asyncio
import time
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client

from tests.harness import Running, request, run_services, wait_for
from tests.reference_profile import reference_profile
from tests.reference_quantities import Trade, reference_bars, reference_large
from tradetape.bus.subjects import query_subject
from tradetape.services.exchange import Exchange, ExchangeConfig
from tradetape.services.exchange.history import AggTrade
from tradetape.testing import simulator_settings

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

UM, CM = "um:ETHUSDT", "cm:BTCUSD_PERP"
EIGHT = Decimal("0.00000001")


def released(exchange: Exchange, name: str, start: int, end: int) -> list[AggTrade]:
    return [t for t in exchange.history(name).trades() if start <= t.time_ms < end and not t.void]


def weighed(trades: list[AggTrade], *, normal: bool) -> list[Trade]:
    return [(t.agg_id, t.time_ms, t.price, (t.normal_qty or "") if normal else t.qty, t.buyer_maker) for t in trades]


def coin_base(trades: list[AggTrade]) -> Decimal:
    """BTCUSD's base volume: per distinct price, contracts × 100 / price rounded half-even to 8 places; summed."""
    levels: dict[Decimal, Decimal] = {}
    for t in trades:
        levels[Decimal(t.price)] = levels.get(Decimal(t.price), Decimal(0)) + Decimal(t.qty)
    return sum(((v * 100 / p).quantize(EIGHT, ROUND_HALF_EVEN) for p, v in levels.items()), Decimal(0))


def dollar_groups(trades: list[AggTrade], threshold: Decimal) -> list[list[AggTrade]]:
    """COIN-M dollar bars: runs of trades closing where their USD (contracts × 100) reaches the threshold."""
    groups: list[list[AggTrade]] = [[]]
    total = Decimal(0)
    for t in trades:
        groups[-1].append(t)
        total += Decimal(t.qty) * 100
        if total >= threshold:
            groups.append([])
            total = Decimal(0)
    return [group for group in groups if group]


def bar_rows(reply: dict[str, Any]) -> list[dict[str, object]]:
    keys = ("open", "high", "low", "close", "volume", "buy_volume", "sell_volume")
    return [
        {"time": b["time"], **{k: Decimal(b[k]) for k in keys}, "trade_count": b["trade_count"], "vwap": b["vwap"]}
        for b in reply["bars"]
    ]


def equal_bars(got: list[dict[str, object]], expected: list[dict[str, object]]) -> None:
    assert [{k: v for k, v in b.items() if k != "vwap"} for b in got] == [
        {k: v for k, v in b.items() if k != "vwap"} for b in expected
    ]
    for a, b in zip(got, expected, strict=True):
        if b["vwap"] is None:
            assert a["vwap"] is None
        else:
            assert abs(Decimal(str(a["vwap"])) - b["vwap"]) <= b["vwap"] * Decimal("1e-12")  # type: ignore[operator]


async def test_normal_quantity_and_coin_volumes_over_nats(nats_url: str, tmp_path: Path) -> None:
    config = ExchangeConfig(symbols=(UM, CM), rate=400, seed=7)
    async with Exchange(config) as exchange:
        settings = simulator_settings(exchange, nats_url, tmp_path / "data", UM, CM)
        nc = await nats.connect(nats_url)
        try:
            async with run_services(settings, "ingest", "persist", "analytics") as running:
                await check(exchange, running, nc)
        finally:
            await nc.close()


async def coverage(nc: Client, name: str) -> dict[str, Any] | None:
    reply, _ = await request(nc, query_subject("coverage", name), {})
    return reply if reply.get("first_time") else None


async def check(exchange: Exchange, running: Running, nc: Client) -> None:
    await asyncio.sleep(6)
    firsts = []
    for name in (UM, CM):  # the tape begins at ingest's first trade: the range starts after both
        whole = await wait_for(lambda name=name: coverage(nc, name), 30, running=running)  # type: ignore[misc]
        firsts.append(whole["first_time"])
    end = int(time.time() * 1000) - 1_500
    start = max(firsts) + 1_000
    assert end - start > 2_000
    span = {"start": start, "end": end}
    expected = {name: released(exchange, name, start, end) for name in (UM, CM)}
    assert len(expected[UM]) > 300 and len(expected[CM]) > 300
    assert any(t.normal_qty != t.qty for t in expected[UM]), "the simulator sends RPI fills"

    async def stored(name: str) -> bool:
        reply, _ = await request(nc, query_subject("coverage", name), span)
        return reply.get("trade_count") == len(expected[name]) and not reply.get("gaps")

    for name in (UM, CM):
        await wait_for(lambda name=name: stored(name), 60, running=running)  # type: ignore[misc]

    um_normal = weighed(expected[UM], normal=True)
    for interval, ms in (("1s", 1_000), ("1m", 60_000)):
        reply, _ = await request(nc, query_subject("bars", UM), {**span, "interval": interval,
                                                                 "quantity": "normal"})  # fmt: skip
        equal_bars(bar_rows(reply), reference_bars(um_normal, ms))
        every, _ = await request(nc, query_subject("bars", UM), {**span, "interval": interval})
        equal_bars(bar_rows(every), reference_bars(weighed(expected[UM], normal=False), ms))

    profile, _ = await request(nc, query_subject("volume_profile", UM), {**span, "quantity": "normal",
                                                                         "min_trades": 1})  # fmt: skip
    reference = reference_profile([(p, q, m) for _, _, p, q, m in um_normal], profile["row_size"], "0.7")
    assert [(Decimal(r["price_low"]), Decimal(r["volume"]), Decimal(r["buy_volume"]), r["trade_count"])
            for r in profile["rows"]] == [(low, v, b, int(n)) for _, low, _, v, b, _, n in reference["rows"]]  # type: ignore[attr-defined]  # fmt: skip
    assert (Decimal(profile["poc"]), Decimal(profile["vah"]), Decimal(profile["val"])) == (
        reference["poc"], reference["vah"], reference["val"]
    )
    top, _ = await request(nc, query_subject("large_trades", UM), {**span, "quantity": "normal", "top": 10})
    assert [(t["agg_id"], Decimal(t["qty"])) for t in top["trades"]] == reference_large(um_normal, 10)

    refused, headers = await request(nc, query_subject("bars", CM), {**span, "quantity": "normal"})
    assert refused["error"]["code"] == "invalid_request" and headers["Nats-Service-Error-Code"] == "400"
    assert "USD-M" in refused["error"]["message"]

    async def coin_bars() -> dict[str, Any] | None:
        reply, _ = await request(nc, query_subject("bars", CM), {**span, "interval": "1s"})
        return reply if reply.get("contract_size") else None

    bars = await wait_for(coin_bars, 30, running=running)
    assert bars["contract_size"] == 100, "BTCUSD: 100 USD a contract, from COIN-M's exchangeInfo"
    for bar in bars["bars"]:
        held = [t for t in expected[CM] if bar["time"] <= t.time_ms < bar["time"] + 1_000]
        assert Decimal(bar["base_volume"]) == coin_base(held)
        assert Decimal(bar["quote_volume"]) == sum(Decimal(t.qty) for t in held) * 100
    dollars, _ = await request(nc, query_subject("bars", CM), {**span, "dollar_bar": "20000"})
    groups = dollar_groups(expected[CM], Decimal(20_000))
    assert dollars["contract_size"] == 100 and len(groups) > 3
    assert [bar["trade_count"] for bar in dollars["bars"]] == [len(group) for group in groups]
    for bar, group in zip(dollars["bars"], groups, strict=True):
        assert Decimal(bar["base_volume"]) == coin_base(group)
        assert Decimal(bar["quote_volume"]) == sum(Decimal(t.qty) for t in group) * 100
    coins, _ = await request(nc, query_subject("volume_profile", CM), {**span, "min_trades": 1})
    total = sum(Decimal(t.qty) for t in expected[CM])
    assert Decimal(coins["total_volume"]) == total and Decimal(coins["total_quote_volume"]) == total * 100
    assert Decimal(coins["total_base_volume"]) == sum(Decimal(r["base_volume"]) for r in coins["rows"])
