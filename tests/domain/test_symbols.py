"""The symbol grammar: Binance's names pass, anything that could become a wildcard, a path or a long subject fails."""

from __future__ import annotations

import pytest

from tradetape.bus.subjects import query_subject, trade_subject
from tradetape.domain.symbols import MAX_SYMBOL_LENGTH, SymbolError, check_symbol, is_symbol, symbol_from_input

GOOD = ["BTCUSDT", "1000SHIBUSDT", "BTCUSD_PERP", "BTCUSDT_250328", "X", "A" * MAX_SYMBOL_LENGTH]
BAD = [
    "", "_", "__", "_BTC", "BTC_", "BTC__USDT", "BTC.USDT", ">", "*", "BTC:USDT", "../../x", "BTC USDT", "BTC-USDT",
    "btcusdt", "BTCUSDT\n", "BTC\x00", "币安人生USDT", "ＢＴＣ", "A" * (MAX_SYMBOL_LENGTH + 1), "A" * 5000,
]


@pytest.mark.parametrize("symbol", GOOD)
def test_binance_names_pass_unchanged(symbol: str) -> None:
    assert check_symbol(symbol) == symbol and is_symbol(symbol)


@pytest.mark.parametrize("name", BAD)
def test_anything_else_fails(name: str) -> None:
    with pytest.raises(SymbolError):
        check_symbol(name)
    assert not is_symbol(name)
    with pytest.raises(ValueError):
        trade_subject(name)


@pytest.mark.parametrize("name", [None, 7, b"BTCUSDT", ["BTCUSDT"]])
def test_what_is_not_text_fails(name: object) -> None:
    assert not is_symbol(name)


def test_typed_input_is_upper_cased_but_only_ascii() -> None:
    assert symbol_from_input(" btcusdt ") == "BTCUSDT"
    assert symbol_from_input("btcusd_perp") == "BTCUSD_PERP"
    # "ﬀ".upper() is "FF": folding first would let a foreign name through as ASCII letters
    with pytest.raises(SymbolError):
        symbol_from_input("btcusdtﬀ")


def test_the_error_is_one_short_line_whatever_the_name() -> None:
    with pytest.raises(SymbolError) as caught:
        check_symbol("A" * 5000 + "\n" + "B" * 5000)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 300 and "10001 characters" in message


def test_every_subject_of_a_symbol_stays_far_below_the_control_line() -> None:
    longest = "A" * MAX_SYMBOL_LENGTH
    assert max(len(query_subject("liquidity_vacuums", longest)), len(trade_subject(longest))) < 128
