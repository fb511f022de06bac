"""COIN-M bars and volume profiles carry base and quote volume (contracts × contract size [/ price]), exactly as a
Decimal reference rounds them; other markets' replies are unchanged."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.store.synthetic import tape
from tests.store.test_normal_quantity import write_live
from tradetape.api.errors import QueryError
from tradetape.api.methods import bars, volume_profile
from tradetape.domain.columns import TradeColumns
from tradetape.services.analytics.query_source import QuerySource
from tradetape.store.budget import ReadBudget
from tradetape.store.reader import ShardReader
from tradetape.store.writer import ShardWriter
from tradetape.testing import HeldTrades

CM = "cm:BTCUSD_PERP"
T0 = 1_767_225_600_000
NOW = T0 + 3_600_000
SPAN = {"start": T0, "end": NOW}
EIGHT = Decimal("0.00000001")


def contracts(trades: TradeColumns) -> TradeColumns:
    """Whole contracts (COIN-M quantities): 1 to 500 of them a trade."""
    whole = (trades.qty % 500 + 1) * 10**8
    return TradeColumns(trades.agg_id, trades.price, whole, trades.first_id, trades.last_id, trades.time,
                        trades.buyer_maker)  # fmt: skip


def reference_base(levels: dict[Decimal, Decimal], size: int) -> Decimal:
    """Per distinct price: contracts × size / price rounded half-even to 8 places; summed."""
    return sum(((v * size / p).quantize(EIGHT, rounding=ROUND_HALF_EVEN) for p, v in levels.items()), Decimal(0))


def by_price(trades: TradeColumns, where: np.ndarray) -> dict[Decimal, Decimal]:
    levels: dict[Decimal, Decimal] = {}
    for p, q in zip(trades.price[where].tolist(), trades.qty[where].tolist(), strict=True):
        price = Decimal(p) / 10**8
        levels[price] = levels.get(price, Decimal(0)) + Decimal(q) / 10**8
    return levels


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), size=st.sampled_from([10, 100]), interval=st.sampled_from(["1m", "7s", "15m"]))
def test_coin_m_bars_and_profile_carry_exact_base_and_quote_volume(seed: int, size: int, interval: str) -> None:
    trades = contracts(tape(3_000, 3_000_000, seed=seed, start_ms=T0))
    source = HeldTrades(trades, contract_sizes={CM: size})
    reply = bars.handle(source, CM, bars.BarsRequest(interval=interval, **SPAN), NOW)
    assert reply.contract_size == size
    interval_ms = reply.interval_ms or 0
    for bar in reply.bars:
        held = (trades.time >= bar.time) & (trades.time < bar.time + interval_ms)
        assert Decimal(bar.quote_volume or "") == Decimal(bar.volume) * size
        assert Decimal(bar.base_volume or "") == reference_base(by_price(trades, held), size)

    profile = volume_profile.handle(source, CM, volume_profile.VolumeProfileRequest(row_size="5", **SPAN), NOW)
    assert profile.contract_size == size
    assert Decimal(profile.total_quote_volume or "") == Decimal(profile.total_volume) * size
    total = Decimal(0)
    for row in profile.rows:
        low, high = (int(Decimal(edge) * 10**8) for edge in (row.price_low, row.price_high))
        expected = reference_base(by_price(trades, (trades.price >= low) & (trades.price < high)), size)
        assert Decimal(row.base_volume or "") == expected
        assert Decimal(row.quote_volume or "") == Decimal(row.volume) * size
        total += expected
    assert Decimal(profile.total_base_volume or "") == total


def test_other_markets_and_unknown_sizes_answer_as_before() -> None:
    trades = contracts(tape(2_000, 3_000_000, start_ms=T0))
    request = bars.BarsRequest(interval="1m", **SPAN)
    spot = bars.handle(HeldTrades(trades, contract_sizes={"BTCUSDT": 100}), "BTCUSDT", request, NOW)
    unknown = bars.handle(HeldTrades(trades), CM, request, NOW)
    for reply in (spot, unknown):
        dumped = reply.model_dump_json()
        assert "base_volume" not in dumped and "quote_volume" not in dumped and "contract_size" not in dumped
    profile = volume_profile.handle(HeldTrades(trades), CM, volume_profile.VolumeProfileRequest(**SPAN), NOW)
    assert "base_volume" not in profile.model_dump_json()


def test_the_store_answers_coin_m_volumes_as_its_trades_do(tmp_path: Path) -> None:
    """From the layer's minute levels (bars of whole minutes) and histograms, as from the trades."""
    trades = contracts(tape(20_000, 3 * 3_600_000, seed=31, start_ms=T0))
    store = ShardWriter(tmp_path / "shard")
    try:
        write_live(store, CM, trades)
    finally:
        store.close()
    reader = ShardReader(tmp_path / "shard", cache_bytes=2**26)
    try:
        source = QuerySource(reader, ReadBudget(2**30, 100, 100), CM, contract_sizes={CM: 100})
        held = HeldTrades(trades, contract_sizes={CM: 100})
        for start, end in ((T0 + 1_234, T0 + 3 * 3_600_000 - 4_321), (T0, T0 + 3 * 3_600_000 + 1)):
            span = {"start": start, "end": end}
            for interval in ("1m", "15m", "7s"):
                request = bars.BarsRequest(interval=interval, **span)
                assert bars.handle(source, CM, request, NOW) == bars.handle(held, CM, request, NOW)
            others = [
                bars.BarsRequest(interval="1d", tz="Asia/Tokyo", **span),
                bars.BarsRequest(volume_bar="2000", **span),
                bars.BarsRequest(dollar_bar="150000", **span),
            ]
            for request in others:
                got_bars = bars.handle(source, CM, request, NOW)
                assert got_bars == bars.handle(held, CM, request, NOW) and got_bars.bars[0].base_volume is not None
            request_profile = volume_profile.VolumeProfileRequest(row_size="2", **span)
            got = volume_profile.handle(source, CM, request_profile, NOW)
            assert got == volume_profile.handle(held, CM, request_profile, NOW)
            assert got.total_base_volume is not None
            by_session = {"tz": "UTC", "start": "01:00", "end": "02:00"}
            request_profile = volume_profile.VolumeProfileRequest(row_size="2", session=by_session, **span)
            got = volume_profile.handle(source, CM, request_profile, NOW)
            assert got == volume_profile.handle(held, CM, request_profile, NOW)
            assert got.sessions and got.sessions[0].total_base_volume is not None
    finally:
        reader.close()


DAY_MS = 86_400_000
DAYS = {"start": T0, "end": T0 + 4 * DAY_MS}


def assert_coin_bars(trades: TradeColumns, bars_: list[bars.BarReply], groups: list[np.ndarray], size: int) -> None:
    """Each bar's quote volume is its contracts × size, its base volume the Decimal reference over its trades."""
    assert len(bars_) == len(groups)
    for bar, held in zip(bars_, groups, strict=True):
        contracts_traded = sum((Decimal(q) / 10**8 for q in trades.qty[held].tolist()), Decimal(0))
        assert Decimal(bar.volume) == contracts_traded
        assert Decimal(bar.quote_volume or "") == contracts_traded * size
        assert Decimal(bar.base_volume or "") == reference_base(by_price(trades, held), size)


def test_too_many_coin_m_dollar_bars_says_to_raise_the_dollar_bar() -> None:
    """A COIN-M dollar bar is computed as a volume bar of contracts: its error still names what was asked."""
    trades = contracts(tape(5_000, 3_000_000, start_ms=T0))
    source = HeldTrades(trades, contract_sizes={CM: 100})
    with pytest.raises(QueryError) as raised:
        bars.handle(source, CM, bars.BarsRequest(dollar_bar="0.00000001", **SPAN), NOW)
    assert raised.value.code == "range_too_large"
    assert "use a larger dollar_bar" in str(raised.value) and "volume_bar" not in str(raised.value)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), size=st.sampled_from([10, 100]), tz=st.sampled_from(["America/New_York", "UTC"]),
       interval=st.sampled_from(["1d", "1w"]))  # fmt: skip
def test_coin_m_calendar_bars_carry_base_and_quote_volume(seed: int, size: int, tz: str, interval: str) -> None:
    trades = contracts(tape(3_000, 4 * DAY_MS, seed=seed, start_ms=T0))
    source = HeldTrades(trades, contract_sizes={CM: size})
    reply = bars.handle(source, CM, bars.BarsRequest(interval=interval, tz=tz, **DAYS), T0 + 4 * DAY_MS)
    assert reply.contract_size == size
    ends = [bar.time for bar in reply.bars[1:]] + [T0 + 4 * DAY_MS]
    groups = [(trades.time >= bar.time) & (trades.time < end) for bar, end in zip(reply.bars, ends, strict=True)]
    assert sum(int(g.sum()) for g in groups) == len(trades)
    assert_coin_bars(trades, reply.bars, groups, size)


def reference_threshold_groups(weights: list[Decimal], threshold: Decimal) -> list[np.ndarray]:
    """Consecutive runs of trades, each closing on the trade at which its running total reaches the threshold."""
    groups, first, total = [], 0, Decimal(0)
    for i, weight in enumerate(weights):
        total += weight
        if total >= threshold:
            groups.append(np.arange(first, i + 1))
            first, total = i + 1, Decimal(0)
    if first < len(weights):
        groups.append(np.arange(first, len(weights)))
    return groups


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), size=st.sampled_from([10, 100]), kind=st.sampled_from(["volume", "tick", "dollar"]),
       amount=st.integers(50, 5_000))  # fmt: skip
def test_coin_m_threshold_bars_carry_base_and_quote_volume(seed: int, size: int, kind: str, amount: int) -> None:
    """A COIN-M dollar bar closes on USD traded, contracts × contract size (price × contracts is no dollar figure)."""
    trades = contracts(tape(3_000, 3_000_000, seed=seed, start_ms=T0))
    source = HeldTrades(trades, contract_sizes={CM: size})
    contracts_each = [Decimal(q) / 10**8 for q in trades.qty.tolist()]
    if kind == "tick":
        request = bars.BarsRequest(tick_bar=amount // 20 + 1, **SPAN)
        groups = reference_threshold_groups([Decimal(1)] * len(trades), Decimal(amount // 20 + 1))
    elif kind == "volume":
        request = bars.BarsRequest(volume_bar=str(amount), **SPAN)
        groups = reference_threshold_groups(contracts_each, Decimal(amount))
    else:
        threshold = Decimal(amount) * size + Decimal("0.5")  # not a whole number of contracts' worth
        request = bars.BarsRequest(dollar_bar=str(threshold), **SPAN)
        groups = reference_threshold_groups([c * size for c in contracts_each], threshold)
    reply = bars.handle(source, CM, request, NOW)
    assert reply.contract_size == size
    assert [bar.trade_count for bar in reply.bars] == [len(g) for g in groups]
    assert_coin_bars(trades, reply.bars, groups, size)


def test_a_coin_m_dollar_bar_needs_the_contract_size() -> None:
    trades = contracts(tape(500, 3_000_000, start_ms=T0))
    with pytest.raises(QueryError) as raised:
        bars.handle(HeldTrades(trades), CM, bars.BarsRequest(dollar_bar="100000", **SPAN), NOW)
    assert raised.value.code == "invalid_request"


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), size=st.sampled_from([10, 100]))
def test_coin_m_session_profiles_carry_base_and_quote_volume(seed: int, size: int) -> None:
    trades = contracts(tape(3_000, 3 * DAY_MS, seed=seed, start_ms=T0))
    source = HeldTrades(trades, contract_sizes={CM: size})
    span = {"start": T0 + 3_600_000, "end": T0 + 3 * DAY_MS}
    request = volume_profile.VolumeProfileRequest(row_size="5", session="london", min_trades=1, **span)
    reply = volume_profile.handle(source, CM, request, T0 + 3 * DAY_MS)
    assert reply.contract_size == size and reply.sessions
    in_range = (trades.time >= span["start"]) & (trades.time < span["end"])
    for answer, part in [(reply, in_range)] + [
        (s, (trades.time >= s.start) & (trades.time < s.end)) for s in reply.sessions
    ]:
        total = Decimal(0)
        for row in answer.rows:
            low, high = (int(Decimal(edge) * 10**8) for edge in (row.price_low, row.price_high))
            expected = reference_base(by_price(trades, part & (trades.price >= low) & (trades.price < high)), size)
            assert Decimal(row.base_volume or "") == expected
            assert Decimal(row.quote_volume or "") == Decimal(row.volume) * size
            total += expected
        assert Decimal(answer.total_base_volume or "") == total
        assert Decimal(answer.total_quote_volume or "") == Decimal(answer.total_volume) * size
