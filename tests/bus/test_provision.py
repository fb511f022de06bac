"""Persist's consumer filter: the shard's subjects, every trade subject for `ALL` on one shard, never unbounded."""

from __future__ import annotations

import pytest

from tradetape.bus.provision import persist_consumer_config
from tradetape.bus.subjects import TRADES_SUBJECTS, trade_subject
from tradetape.settings import Settings


def test_a_list_filters_on_its_shards_subjects() -> None:
    settings = Settings(symbols="BTCUSDT,ETHUSDT")
    assert persist_consumer_config(settings).filter_subjects == [trade_subject("BTCUSDT"), trade_subject("ETHUSDT")]


def test_all_on_one_shard_takes_every_trade_subject() -> None:
    config = persist_consumer_config(Settings(symbols="ALL"), ("BTCUSDT", "ETHUSDT"))
    assert config.filter_subjects == [TRADES_SUBJECTS] and config.durable_name == "persist-main"


def test_all_on_shards_filters_on_the_resolved_share() -> None:
    settings = Settings(symbols="ALL", shard="s1", shard_count=2, shard_index=1)
    share = settings.shard_share(("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"))
    assert persist_consumer_config(settings, share).filter_subjects == [trade_subject(s) for s in share]
    with pytest.raises(RuntimeError, match="TRADETAPE_SYMBOLS=ALL"):
        persist_consumer_config(settings)  # unresolved: "ALL" is never taken for a subject


def test_too_many_subjects_or_none_are_refused() -> None:
    settings = Settings(symbols="ALL", shard="s0", shard_count=2, shard_index=0)
    many = tuple(f"S{i}USDT" for i in range(1001))
    with pytest.raises(ValueError, match="1001 subjects.*TRADETAPE_SHARD_COUNT"):
        persist_consumer_config(settings, many)
    with pytest.raises(ValueError, match="owns no symbol"):
        persist_consumer_config(settings, ())
