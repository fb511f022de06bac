"""USD-M and COIN-M on the wire: frames and REST rows as Binance's derivatives docs show them, exchangeInfo, dumps."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradetape.binance.aggtrade import TradeFormatError, parse_trade
from tradetape.binance.dumps import DumpMarketError, check_dump_market, dump_path, path_market
from tradetape.binance.frames import AggTradeFrame, parse_frame
from tradetape.binance.markets import market_api
from tradetape.binance.rest import GapFillError, RestClient, parse_listing, parse_page
from tradetape.domain.decimals import format_units
from tradetape.domain.instruments import Market
from tradetape.domain.trade import NO_NORMAL_QTY

UM_FRAME = {
    "stream": "btcusdt@aggTrade",
    "data": {
        "e": "aggTrade",
        "E": 1_767_225_600_120,
        "s": "BTCUSDT",
        "a": 2_943_775_001,
        "p": "87651.30",
        "q": "0.250",
        "nq": "0.180",
        "f": 6_802_113_400,
        "l": 6_802_113_404,
        "T": 1_767_225_600_101,
        "m": False,
    },
}
"""A USD-M combined-stream frame as fstream sends it since 2025-12-31: `nq` beside `q`, no `M`."""
CM_FRAME = {
    "stream": "btcusd_perp@aggTrade",
    "data": {
        "e": "aggTrade",
        "E": 1_767_225_600_220,
        "s": "BTCUSD_PERP",
        "a": 411_902_117,
        "p": "87640.1",
        "q": "37",
        "f": 1_093_554_001,
        "l": 1_093_554_003,
        "T": 1_767_225_600_215,
        "m": True,
    },
}
"""A COIN-M frame: quantities are contracts, no `M`, no `nq`."""
UM_ROW = {"a": 26129, "p": "0.01633102", "q": "4.70443515", "nq": "4.70443515", "f": 27781, "l": 27781,
          "T": 1_767_225_600_003, "m": True}  # fmt: skip


def test_a_usdm_frame_carries_nq_beside_q_exactly() -> None:
    frame = parse_frame(orjson.dumps(UM_FRAME), frozenset({"BTCUSDT"}))
    assert isinstance(frame, AggTradeFrame)
    row = frame.row
    assert (row.agg_id, row.price, row.qty, frame.normal_qty) == (
        2_943_775_001,
        8_765_130_000_000,
        25_000_000,
        18_000_000,
    )
    assert frame.data == UM_FRAME["data"], "the raw object goes on the bus as the exchange sent it"


def test_a_coinm_frame_has_contracts_and_no_nq() -> None:
    frame = parse_frame(orjson.dumps(CM_FRAME), frozenset({"BTCUSD_PERP"}))
    assert isinstance(frame, AggTradeFrame)
    assert (frame.symbol, frame.row.qty, frame.normal_qty) == ("BTCUSD_PERP", 37 * 10**8, None)


def test_a_spot_frame_is_read_as_before() -> None:
    spot = {**UM_FRAME["data"], "M": True}
    del spot["nq"]
    assert parse_trade(spot)[:7] == parse_trade(UM_FRAME["data"])[:7], "nq is checked, q is the row's quantity"
    assert parse_trade(spot).normal_qty == NO_NORMAL_QTY
    assert parse_trade(UM_FRAME["data"]).normal_qty == 18_000_000


units = st.integers(min_value=1, max_value=10**15)


@given(qty=units, share=st.fractions(min_value=0, max_value=1))
def test_any_nq_from_zero_to_q_is_kept_exactly(qty: int, share: object) -> None:
    normal = int(qty * share)  # type: ignore[operator]
    obj = {**UM_ROW, "q": format_units(qty), "nq": format_units(normal)}
    assert (parse_trade(obj).qty, parse_trade(obj).normal_qty) == (qty, normal)


@given(qty=units, above=st.integers(min_value=1, max_value=10**8))
def test_an_nq_above_q_is_refused(qty: int, above: int) -> None:
    with pytest.raises(TradeFormatError, match="'nq'"):
        parse_trade({**UM_ROW, "q": format_units(qty), "nq": format_units(qty + above)})


@pytest.mark.parametrize("nq", [0.18, "-0.1", "1²", "", None, "0.123456789"])
def test_an_nq_that_is_no_plain_decimal_is_refused(nq: object) -> None:
    with pytest.raises(TradeFormatError, match="'nq'"):
        parse_trade({**UM_ROW, "nq": nq})


def test_a_void_may_carry_a_zero_nq_and_no_other() -> None:
    void = {**UM_ROW, "p": "0", "q": "0", "f": -1, "l": -1}
    assert parse_trade({**void, "nq": "0.00000000"}).qty == 0
    with pytest.raises(TradeFormatError, match="'nq'"):
        parse_trade({**void, "nq": "1"})


def test_fapi_rows_keep_their_nq() -> None:
    page = parse_page(orjson.dumps([UM_ROW, {**UM_ROW, "a": 26130, "nq": "1.5"}]), 26129, 1000)
    assert [parse_trade(obj).normal_qty for obj, _ in page] == [470_443_515, 150_000_000]
    with pytest.raises(GapFillError, match="row 1: field 'nq'"):
        parse_page(orjson.dumps([UM_ROW, {**UM_ROW, "a": 26130, "nq": "9"}]), 26129, 1000)


FAPI_INFO = {
    "timezone": "UTC",
    "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400}],
    "symbols": [
        {"symbol": "BTCUSDT", "pair": "BTCUSDT", "contractType": "PERPETUAL", "status": "TRADING"},
        {"symbol": "BTCUSDT_261225", "pair": "BTCUSDT", "contractType": "CURRENT_QUARTER", "status": "TRADING"},
        {"symbol": "ETHUSDT_250328", "pair": "ETHUSDT", "contractType": "", "status": "SETTLING"},
        {"symbol": "OLDUSDT", "pair": "OLDUSDT", "contractType": "", "status": "TRADING"},
        {"symbol": "XYZUSDT", "pair": "XYZUSDT", "contractType": "PERPETUAL", "status": "PENDING_TRADING"},
    ],
}
DAPI_INFO = {
    "symbols": [
        {"symbol": "BTCUSD_PERP", "contractType": "PERPETUAL", "contractStatus": "TRADING", "contractSize": 100},
        {"symbol": "ETHUSD_261225", "contractType": "CURRENT_QUARTER", "contractStatus": "TRADING", "contractSize": 10},
        {"symbol": "BTCUSD_250328", "contractType": "CURRENT_QUARTER", "contractStatus": "DELIVERING",
         "contractSize": 100},
    ]
}  # fmt: skip


def test_usdm_exchange_info_lists_trading_perpetual_and_delivery_contracts() -> None:
    listed = parse_listing(orjson.dumps(FAPI_INFO), market_api(Market.UM))
    assert [(i.symbol, i.contract_type, i.contract_size) for i in listed] == [
        ("BTCUSDT", "PERPETUAL", None),
        ("BTCUSDT_261225", "CURRENT_QUARTER", None),
    ]


def test_coinm_exchange_info_reads_contract_status_and_keeps_contract_size() -> None:
    listed = parse_listing(orjson.dumps(DAPI_INFO), market_api(Market.CM))
    assert [(i.symbol, i.contract_size) for i in listed] == [("BTCUSD_PERP", 100), ("ETHUSD_261225", 10)]
    assert parse_listing(orjson.dumps(DAPI_INFO), market_api(Market.UM)) == [], "COIN-M's status is contractStatus"


@pytest.mark.parametrize("size", ["100", 0, -10, 1.5, None])
def test_a_contract_size_that_is_no_positive_integer_makes_the_answer_unusable(size: object) -> None:
    info = {"symbols": [{"symbol": "BTCUSD_PERP", "contractType": "PERPETUAL", "contractStatus": "TRADING",
                         "contractSize": size}]}  # fmt: skip
    with pytest.raises(GapFillError, match="contractSize"):
        parse_listing(orjson.dumps(info), market_api(Market.CM))


async def test_a_market_client_refuses_another_markets_instrument() -> None:
    client = RestClient("http://127.0.0.1:9", weight_per_minute=2400, market=Market.UM)
    for name in ("BTCUSDT", "cm:BTCUSD_PERP"):
        with pytest.raises(ValueError, match="not a um instrument"):
            await client.agg_trades(name, 1)
    assert client.calls == 0


def test_dump_paths_per_market() -> None:
    assert dump_path("daily", "BTCUSDT", "2026-01-01", Market.UM) == (
        "data/futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2026-01-01.zip"
    )
    assert dump_path("monthly", "BTCUSD_PERP", "2026-01", Market.CM).startswith("data/futures/cm/monthly/aggTrades/")
    assert (
        dump_path("daily", "BTCUSDT", "2026-01-01")
        == "data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2026-01-01.zip"
    )
    for market in Market:
        assert path_market("/tmp/x/" + dump_path("daily", "BTCUSDT", "2026-01-01", market)) is market
    assert path_market("BTCUSDT-aggTrades-2026-01-01.zip") is None


@pytest.mark.parametrize(
    ("market", "source", "columns", "unit", "reason"),
    [
        (Market.UM, "data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2026-01-01.zip", None, None, "by its path"),
        (Market.UM, "data/futures/cm/daily/aggTrades/BTCUSDT/x.zip", 7, "ms", "a cm dump"),
        (Market.SPOT, "data/futures/um/daily/aggTrades/BTCUSDT/x.zip", 8, "us", "a um dump"),
        (Market.UM, "BTCUSDT-aggTrades-2026-01-01.zip", 8, "us", "make a spot dump"),
        (Market.CM, "BTCUSD_PERP-aggTrades-2026-01-01.zip", 7, "us", "make a spot dump"),
        (Market.SPOT, "BTCUSDT-aggTrades-2026-01-01.zip", 7, "ms", "make a cm or um dump"),
    ],
)
def test_a_dump_of_another_market_is_refused(
    market: Market, source: str, columns: int | None, unit: str | None, reason: str
) -> None:
    with pytest.raises(DumpMarketError, match=reason):
        check_dump_market(market, source, columns=columns, unit=unit)


@pytest.mark.parametrize(
    ("market", "source", "columns", "unit"),
    [
        (Market.UM, "data/futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2026-01-01.zip", 7, "ms"),
        (Market.CM, "BTCUSD_PERP-aggTrades-2026-01-01.zip", 7, "ms"),
        (Market.SPOT, "data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-01-01.zip", 8, "ms"),
        (Market.SPOT, "BTCUSDT-aggTrades-2026-01-01.zip", 8, "us"),
    ],
)
def test_a_dump_of_the_instruments_market_passes(market: Market, source: str, columns: int, unit: str) -> None:
    check_dump_market(market, source, columns=columns, unit=unit)
