"""`Settings`' symbols: a list, or `ALL` that only the exchange can turn into one, and a shard's share of either."""

from __future__ import annotations

import zlib

import pytest
from pydantic import ValidationError

from tradetape.domain.instruments import Market
from tradetape.settings import Settings, SymbolsUnresolvedError, shard_of

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT")


def test_all_is_a_setting_not_a_symbol() -> None:
    settings = Settings(symbols="all")
    assert settings.symbols == ("ALL",) and settings.symbols_from_exchange
    assert settings.to_env()["TRADETAPE_SYMBOLS"] == "ALL"
    with pytest.raises(SymbolsUnresolvedError, match="TRADETAPE_SYMBOLS=ALL"):
        _ = settings.shard_symbols
    assert not Settings(symbols="BTCUSDT").symbols_from_exchange


def test_symbols_follow_the_grammar_in_any_case() -> None:
    assert Settings(symbols=" btcusdt, btcusd_perp ").symbols == ("BTCUSDT", "BTCUSD_PERP")
    for bad in ("BTC.USDT", "BTCUSDT,>", "A" * 33, "BTC_"):
        with pytest.raises(ValidationError, match="not a Binance symbol"):
            Settings(symbols=bad)


def test_all_stands_alone() -> None:
    with pytest.raises(ValidationError, match="ALL stands alone"):
        Settings(symbols="BTCUSDT,ALL")


@pytest.mark.parametrize("symbols", ["ALL", ",".join(SYMBOLS)])
def test_shards_split_any_list_by_the_stable_hash(symbols: str) -> None:
    shards = [Settings(symbols=symbols, shard_count=3, shard_index=i) for i in range(3)]
    shares = [shard.shard_share(SYMBOLS) for shard in shards]
    assert sorted(s for share in shares for s in share) == sorted(SYMBOLS)
    for index, share in enumerate(shares):
        assert all(shard_of(s, 3) == index for s in share)
        assert all(shards[index].owns(s) == (s in share) for s in SYMBOLS)
    if symbols != "ALL":
        assert [shard.shard_symbols for shard in shards] == shares


def test_a_list_owns_only_its_symbols_and_all_owns_any() -> None:
    assert not Settings(symbols="BTCUSDT").owns("ETHUSDT")
    assert Settings(symbols="BTCUSDT").shard_share(["ETHUSDT", "BTCUSDT"]) == ("BTCUSDT",)
    assert Settings(symbols="ALL").owns("NEWUSDT")
    assert Settings(symbols="ALL").shard_share(["SOLUSDT", "BTCUSDT"]) == ("SOLUSDT", "BTCUSDT")


def test_instruments_of_every_market_and_each_markets_all() -> None:
    settings = Settings(symbols=" btcusdt, UM:btcusdt ,cm:BTCUSD_PERP,spot:ethusdt")
    assert settings.symbols == ("BTCUSDT", "um:BTCUSDT", "cm:BTCUSD_PERP", "ETHUSDT")
    assert settings.shard_symbols == settings.symbols and not settings.symbols_from_exchange
    assert settings.owns("um:BTCUSDT") and not settings.owns("um:ETHUSDT") and not settings.owns("cm:BTCUSDT")
    mixed = Settings(symbols="um:ALL,BTCUSDT,cm:BTCUSD_PERP")
    assert mixed.markets_from_exchange == (Market.UM,) and mixed.symbols_from_exchange
    assert mixed.owns("um:NEWUSDT") and mixed.owns("BTCUSDT") and not mixed.owns("ETHUSDT")
    assert not mixed.owns("cm:ETHUSD_PERP") and not mixed.owns("um:ALL") and not mixed.owns("um:a.b")
    with pytest.raises(SymbolsUnresolvedError, match="TRADETAPE_SYMBOLS=um:ALL"):
        _ = mixed.shard_symbols
    assert Settings(symbols="ALL,um:ALL,cm:ALL").markets_from_exchange == (Market.SPOT, Market.UM, Market.CM)
    assert Settings(symbols="ALL,um:BTCUSDT").to_env()["TRADETAPE_SYMBOLS"] == "ALL,um:BTCUSDT"


@pytest.mark.parametrize("symbols", ["um:ALL,um:BTCUSDT", "cm:BTCUSD_PERP,cm:ALL"])
def test_a_markets_all_stands_alone_in_its_market(symbols: str) -> None:
    with pytest.raises(ValidationError, match="ALL stands alone in its market"):
        Settings(symbols=symbols)


def test_the_market_is_part_of_the_shard_hash_and_spot_keeps_its_shard() -> None:
    names = [f"{market}{s}" for s in SYMBOLS for market in ("", "um:", "cm:")]
    shards = [Settings(symbols="ALL,um:ALL,cm:ALL", shard_count=4, shard_index=i) for i in range(4)]
    shares = [shard.shard_share(names) for shard in shards]
    assert sorted(n for share in shares for n in share) == sorted(names)
    assert {shard_of(s, 4) for s in SYMBOLS} == {zlib.crc32(s.encode()) % 4 for s in SYMBOLS}
    assert any(shard_of(s, 4) != shard_of(f"um:{s}", 4) for s in SYMBOLS), "the market moves some instruments"
