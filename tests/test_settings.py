"""`Settings`' symbols: a list, or `ALL` that only the exchange can turn into one, and a shard's share of either."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

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
