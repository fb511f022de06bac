"""Persist's consumer filter: the shard's subjects, every trade subject for `ALL` on one shard, never unbounded;
the KV buckets, built alike."""

from __future__ import annotations

import nats
import pytest
from nats.js.api import StorageType

from tradetape.bus.ledger import LEDGER_BUCKET, ledger_bucket
from tradetape.bus.provision import kv_bucket_config, persist_consumer_config
from tradetape.bus.shard_stores import SHARD_STORES_BUCKET, ShardStore, record_shard_store
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


async def test_every_kv_bucket_is_built_alike(nats_url: str) -> None:
    """The ledger and the shard-store records come out of one config: file storage, the newest value of a key only."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ledger_bucket(js, create=True)
        await record_shard_store(js, ShardStore(shard="s1", store_id="a", host="h", dir="/d", since_ms=1))
        for bucket in (LEDGER_BUCKET, SHARD_STORES_BUCKET):
            config = (await js.stream_info(f"KV_{bucket}")).config
            assert (config.storage, config.max_msgs_per_subject, config.num_replicas) == (StorageType.FILE, 1, 1)
            assert config.description, bucket
    finally:
        await nc.close()


def test_a_kv_bucket_config_takes_the_replicas_asked() -> None:
    config = kv_bucket_config("B", "what B holds", replicas=3)
    assert (config.bucket, config.description, config.replicas) == ("B", "what B holds", 3)
    assert (config.storage, config.history) == (StorageType.FILE, 1)
