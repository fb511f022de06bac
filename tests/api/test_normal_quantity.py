"""`quantity: "normal"`: every volume-based method sums USD-M's `nq` exactly as a Decimal reference does, from the
trades and from the store's layer alike; refused on spot and COIN-M, and over trades without `nq`."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tests.reference_profile import reference_profile
from tests.reference_quantities import Trade, reference_bars, reference_large, reference_vwap
from tests.store.synthetic import tape
from tests.store.test_normal_quantity import with_nq, write_live
from tradetape.api.errors import QueryError
from tradetape.api.methods import bars, flow, footprint, large_trades, liquidity_vacuums, volume_profile, vwap
from tradetape.domain.columns import NormalQuantityUnknown, TradeColumns
from tradetape.domain.decimals import format_units
from tradetape.domain.trade import TradeRow
from tradetape.errors import RequestError
from tradetape.services.analytics.query_source import QuerySource
from tradetape.store.budget import ReadBudget
from tradetape.store.reader import ShardReader
from tradetape.store.writer import ShardWriter
from tradetape.testing import HeldTrades

UM = "um:BTCUSDT"
T0 = 1_767_225_600_000
NOW = T0 + 3 * 3_600_000
LOT = 100_000  # 0.001
TICK = 10_000_000  # 0.1

trade_specs = st.lists(
    st.tuples(
        st.integers(0, 4_000),  # ms since the previous trade
        st.integers(-5, 5),  # price steps in ticks
        st.integers(1, 3_000),  # quantity in lots
        st.sampled_from([10, 10, 10, 0, 3, 7]),  # nq in tenths of q (10: no RPI)
        st.booleans(),
    ),
    min_size=1,
    max_size=150,
)


def um_trades(specs: list[tuple[int, int, int, int, bool]]) -> list[TradeRow]:
    rows, time, price = [], T0 + 1_000, 30_000 * 10**8
    for i, (gap, step, lots, tenths, maker) in enumerate(specs):
        time, price = time + gap, max(price + step * TICK, TICK)
        qty = lots * LOT
        rows.append(TradeRow(1_000 + i, price, qty, 5 * i, 5 * i + 2, time, maker, qty * tenths // 10 // LOT * LOT))
    return rows


def weighed(rows: list[TradeRow], *, normal: bool) -> list[Trade]:
    return [
        (r.agg_id, r.time, format_units(r.price), format_units(r.normal_qty if normal else r.qty), r.buyer_maker)
        for r in rows
    ]


SPAN = {"start": T0, "end": T0 + 3_600_000}


def bar_rows(reply: bars.BarsReply) -> list[dict[str, object]]:
    rows = []
    for bar in reply.bars:
        row: dict[str, object] = {
            key: Decimal(getattr(bar, key)) for key in ("open", "high", "low", "close", "volume", "buy_volume",
                                                        "sell_volume")
        }  # fmt: skip
        rows.append({"time": bar.time, **row, "trade_count": bar.trade_count, "vwap": bar.vwap})
    return rows


def close_enough(got: list[dict[str, object]], expected: list[dict[str, object]]) -> bool:
    """Equal, VWAP (a float) within a relative 1e-12 of the exact one, None where volume is 0."""
    for a, b in zip(got, expected, strict=True):
        if {k: v for k, v in a.items() if k != "vwap"} != {k: v for k, v in b.items() if k != "vwap"}:
            return False
        if (a["vwap"] is None) != (b["vwap"] is None):
            return False
        if b["vwap"] is not None and abs(Decimal(str(a["vwap"])) - b["vwap"]) > b["vwap"] * Decimal("1e-12"):  # type: ignore[operator]
            return False
    return len(got) == len(expected)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(specs=trade_specs)
def test_normal_answers_equal_a_decimal_reference(specs: list[tuple[int, int, int, int, bool]]) -> None:
    rows = um_trades(specs)
    source = HeldTrades.from_rows(rows)
    normal, every = weighed(rows, normal=True), weighed(rows, normal=False)
    for interval, ms in (("1m", 60_000), ("7s", 7_000)):
        for trades, quantity in ((normal, "normal"), (every, "all")):
            reply = bars.handle(source, UM, bars.BarsRequest(interval=interval, quantity=quantity, **SPAN), NOW)
            assert close_enough(bar_rows(reply), reference_bars(trades, ms))

    flows = flow.handle(source, UM, flow.FlowRequest(interval="1m", quantity="normal", **SPAN), NOW)
    expected = reference_bars(normal, 60_000)
    assert [(Decimal(r.buy_volume), Decimal(r.sell_volume)) for r in flows.rows] == [
        (b["buy_volume"], b["sell_volume"]) for b in expected
    ]
    total_buy = sum((b["buy_volume"] for b in expected), Decimal(0))  # type: ignore[misc]
    assert Decimal(flows.buy_volume) == total_buy

    volume = sum(Decimal(q) for *_, q, _ in normal)
    request = vwap.VwapRequest(quantity="normal", **SPAN)
    if volume:
        got = vwap.handle(source, UM, request, NOW)
        assert abs(Decimal(str(got.vwap)) - reference_vwap(normal)) <= reference_vwap(normal) * Decimal("1e-12")
        assert Decimal(str(got.volume)) == volume
    else:
        with pytest.raises(QueryError, match="1 needed"):
            vwap.handle(source, UM, request, NOW)

    top = large_trades.handle(source, UM, large_trades.LargeTradesRequest(top=5, quantity="normal", **SPAN), NOW)
    assert [(t.agg_id, Decimal(t.qty)) for t in top.trades] == reference_large(normal, 5)

    profile_request = volume_profile.VolumeProfileRequest(row_size="1", min_trades=1, quantity="normal", **SPAN)
    if volume:
        profile = volume_profile.handle(source, UM, profile_request, NOW)
        reference = reference_profile([(p, q, m) for _, _, p, q, m in normal], "1", "0.7")
        assert [(Decimal(r.price_low), Decimal(r.volume), Decimal(r.buy_volume), Decimal(r.sell_volume), r.trade_count)
                for r in profile.rows] == [(low, v, b, s, int(n)) for _, low, _, v, b, s, n in reference["rows"]]  # type: ignore[attr-defined]  # fmt: skip
        assert (Decimal(profile.poc), Decimal(profile.vah), Decimal(profile.val)) == (
            reference["poc"], reference["vah"], reference["val"]
        )
        assert Decimal(profile.total_volume) == volume and profile.trade_count == len(rows)


def normal_replies(source: Any, symbol: str, time_range: tuple[int, int]) -> list[BaseModel]:
    span: dict[str, Any] = {"start": time_range[0], "end": time_range[1], "quantity": "normal"}
    return [
        bars.handle(source, symbol, bars.BarsRequest(interval="1m", **span), NOW),
        bars.handle(source, symbol, bars.BarsRequest(interval="7s", **span), NOW),
        bars.handle(source, symbol, bars.BarsRequest(volume_bar="50", **span), NOW),
        flow.handle(source, symbol, flow.FlowRequest(interval="5m", **span), NOW),
        vwap.handle(source, symbol, vwap.VwapRequest(interval="1m", **span), NOW),
        volume_profile.handle(source, symbol, volume_profile.VolumeProfileRequest(min_trades=1, **span), NOW),
        liquidity_vacuums.handle(
            source, symbol, liquidity_vacuums.LiquidityVacuumsRequest(min_trades=1, row_size="0.5", **span), NOW
        ),
        large_trades.handle(source, symbol, large_trades.LargeTradesRequest(top=10, **span), NOW),
        footprint.handle(source, symbol, footprint.FootprintRequest(interval="15m", row_size="1", **span), NOW),
    ]


@pytest.fixture(scope="module")
def um_tape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, TradeColumns]]:
    trades = with_nq(tape(20_000, 3 * 3_600_000, seed=21), seed=22)
    path = tmp_path_factory.mktemp("um") / "shard"
    store = ShardWriter(path)
    try:
        write_live(store, UM, trades)
    finally:
        store.close()
    yield path, trades


@pytest.mark.slow
@pytest.mark.parametrize("time_range", [(T0 + 1_234, NOW - 4_321), (T0 + 3_600_000, T0 + 7_200_000), (T0, NOW + 1)])
def test_the_store_answers_normal_as_its_trades_do(
    um_tape: tuple[Path, TradeColumns], time_range: tuple[int, int]
) -> None:
    """From the layer's normal figures and decoded edges, exactly what the trades' `normal()` give."""
    path, trades = um_tape
    reader = ShardReader(path, cache_bytes=2**26)
    try:
        source = QuerySource(reader, ReadBudget(2**30, 100, 100), UM)
        for _ in range(2):  # the second time from the cache
            stored = [r.model_dump() for r in normal_replies(source, UM, time_range)]
            assert stored == [r.model_dump() for r in normal_replies(HeldTrades(trades), UM, time_range)]
        every = bars.handle(source, UM, bars.BarsRequest(interval="1m", start=time_range[0], end=time_range[1]), NOW)
        assert [bar.volume for bar in every.bars] != [bar["volume"] for bar in stored[0]["bars"]]
    finally:
        reader.close()


@pytest.mark.parametrize("symbol", ["BTCUSDT", "cm:BTCUSD_PERP"])
def test_normal_is_refused_where_trades_carry_no_nq(symbol: str) -> None:
    source = HeldTrades(tape(100, 60_000, start_ms=T0))
    for method, request in (
        (bars, bars.BarsRequest(quantity="normal", **SPAN)),
        (volume_profile, volume_profile.VolumeProfileRequest(quantity="normal", **SPAN)),
        (large_trades, large_trades.LargeTradesRequest(quantity="normal", **SPAN)),
    ):
        with pytest.raises(QueryError) as refused:
            method.handle(source, symbol, request, NOW)  # type: ignore[attr-defined]
        assert refused.value.code == "invalid_request" and "USD-M" in refused.value.message


def test_normal_over_usd_m_trades_without_nq_is_the_askers_to_change() -> None:
    """A USD-M trade imported from a dump has no `nq`: "normal" is refused, naming why, never guessed."""
    trades = with_nq(tape(500, 60_000, start_ms=T0), seed=3)
    assert trades.normal_qty is not None
    trades.normal_qty[10] = -1
    with pytest.raises(NormalQuantityUnknown, match="1 of 500 trades") as refused:
        bars.handle(HeldTrades(trades), UM, bars.BarsRequest(quantity="normal", **SPAN), NOW)
    assert isinstance(refused.value, RequestError), "answered invalid_request"
    assert bars.handle(HeldTrades(trades), UM, bars.BarsRequest(**SPAN), NOW).trade_count == 500


def test_quantity_all_is_the_default_and_ignores_nq() -> None:
    trades = with_nq(tape(2_000, 600_000, start_ms=T0), seed=5)
    plain = TradeColumns.of_arrays(list(trades.arrays())[:7])
    assert np.any(trades.normal_qty != trades.qty)
    for symbol in (UM, "BTCUSDT"):
        assert bars.handle(HeldTrades(trades), UM, bars.BarsRequest(**SPAN), NOW) == bars.handle(
            HeldTrades(plain), symbol, bars.BarsRequest(**SPAN), NOW
        ).model_copy(update={"symbol": UM})
