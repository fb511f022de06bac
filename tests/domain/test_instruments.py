"""The instrument grammar: a market prefix or none, the symbol grammar behind it, two spellings that round-trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradetape.domain.instruments import (
    Market,
    check_instrument,
    instrument_from_input,
    instrument_name,
    instrument_of_token,
    instrument_token,
    is_instrument,
    market_of,
    split_instrument,
    symbol_of_instrument,
)
from tradetape.domain.symbols import SymbolError

NAMES = {
    "BTCUSDT": (Market.SPOT, "BTCUSDT", "BTCUSDT"),
    "um:BTCUSDT": (Market.UM, "BTCUSDT", "um.BTCUSDT"),
    "um:BTCUSDT_261225": (Market.UM, "BTCUSDT_261225", "um.BTCUSDT_261225"),
    "cm:BTCUSD_PERP": (Market.CM, "BTCUSD_PERP", "cm.BTCUSD_PERP"),
}
BAD = [
    "", ":", "um:", ":BTCUSDT", "spot:BTCUSDT", "UM:BTCUSDT", "xx:BTCUSDT", "um:um:BTCUSDT", "um:btcusdt",
    "um.BTCUSDT", "um:BTC.USDT", "um:>", "um:*", "um :BTCUSDT", "um:" + "A" * 33, "cm:" + "A" * 5000, None, 7,
]


@pytest.mark.parametrize("name", NAMES)
def test_names_split_into_market_and_symbol_and_back(name: str) -> None:
    market, symbol, token = NAMES[name]
    assert split_instrument(name) == (market, symbol)
    assert market_of(name) is market and symbol_of_instrument(name) == symbol
    assert instrument_name(market, symbol) == name == check_instrument(name)
    assert is_instrument(name)
    assert instrument_token(name) == token and instrument_of_token(token) == name


@pytest.mark.parametrize("name", BAD)
def test_anything_else_fails_with_a_short_message(name: object) -> None:
    assert not is_instrument(name)
    with pytest.raises(SymbolError) as refused:
        check_instrument(name)
    assert len(str(refused.value)) < 300


@pytest.mark.parametrize("token", ["um.BTC.USDT", "xx.BTCUSDT", "um.", ".BTCUSDT", "spot.BTCUSDT", "um:BTCUSDT"])
def test_a_token_that_spells_no_instrument_fails(token: str) -> None:
    with pytest.raises(SymbolError):
        instrument_of_token(token)


def test_typed_input_folds_the_prefix_and_the_symbol() -> None:
    assert instrument_from_input(" UM:btcusdt ") == "um:BTCUSDT"
    assert instrument_from_input("Cm:btcusd_perp") == "cm:BTCUSD_PERP"
    assert instrument_from_input("spot:ethusdt") == "ETHUSDT"
    assert instrument_from_input("ethusdt") == "ETHUSDT"
    for typed in ["fut:BTCUSDT", "um:币安", "um:BTC USDT", "um" + ":" * 3]:
        with pytest.raises(SymbolError):
            instrument_from_input(typed)


@given(st.sampled_from(list(Market)), st.from_regex(r"[A-Z0-9]{1,10}(_[A-Z0-9]{1,10}){0,2}", fullmatch=True))
def test_every_market_and_symbol_round_trips(market: Market, symbol: str) -> None:
    name = instrument_name(market, symbol)
    assert split_instrument(name) == (market, symbol)
    assert instrument_of_token(instrument_token(name)) == name
    assert instrument_from_input(name.lower() if market is Market.SPOT else name) == name
