"""The offline demo's instruments: what `up --simulate` and `tradetape exchange` list, in every market."""

from __future__ import annotations

import pytest

from tradetape.cli.exchange_options import DEMO_SYMBOLS, demo_settings, exchange_config
from tradetape.cli.main import build_parser
from tradetape.domain.instruments import Market, market_of
from tradetape.services.exchange import ExchangeConfig
from tradetape.settings import Settings


def simulator_of(symbols: str | None) -> ExchangeConfig:
    args = build_parser().parse_args(["exchange", "--port", "0"])
    settings = Settings() if symbols is None else Settings(symbols=symbols)
    config = exchange_config(args, demo_settings(settings))
    assert isinstance(config, ExchangeConfig)
    return config


def test_with_no_symbols_set_the_demo_trades_every_market() -> None:
    assert {market_of(name) for name in DEMO_SYMBOLS} == set(Market)
    assert demo_settings(Settings()).symbols == DEMO_SYMBOLS
    assert tuple(simulator_of(None).symbols) == DEMO_SYMBOLS
    chosen = Settings(symbols="ETHUSDT")
    assert demo_settings(chosen) is chosen, "symbols the user set are kept"


@pytest.mark.parametrize(
    ("symbols", "listed"),
    [
        ("ETHUSDT,um:ETHUSDT,cm:ETHUSD_PERP", ("ETHUSDT", "um:ETHUSDT", "cm:ETHUSD_PERP")),
        ("um:SOLUSDT", ("um:SOLUSDT",)),
        ("ALL", ("BTCUSDT", "ETHUSDT")),
        ("um:ALL,cm:ALL,BTCUSDT", ("BTCUSDT", "um:BTCUSDT", "cm:BTCUSD_PERP")),
        ("ALL,um:ETHUSDT", ("um:ETHUSDT", "BTCUSDT", "ETHUSDT")),
    ],
)
def test_the_simulator_serves_every_instrument_named_and_the_demo_s_for_a_market_s_all(
    symbols: str, listed: tuple[str, ...]
) -> None:
    """It listed spot names only: `um:` and `cm:` instruments had no stream, no REST, no dumps offline."""
    assert tuple(simulator_of(symbols).symbols) == listed
