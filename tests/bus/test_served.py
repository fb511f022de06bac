"""The served lists in NATS KV: their codec's bounds, and a reader that leaves out what is not one."""

from __future__ import annotations

import zlib

import nats
import pytest

from tradetape.bus.served import (
    MAX_SERVED_JSON,
    SERVED_BUCKET,
    Served,
    ServedFormatError,
    decode_served,
    encode_served,
    publish_served,
    read_served,
    served_config,
    served_methods,
)


def served(shard: str, symbols: list[str]) -> Served:
    return Served(shard=shard, shard_index=0, shard_count=1, methods=["bars", "coverage"], symbols=symbols,
                  updated_ms=1)


def test_a_list_round_trips_small_and_names_that_are_no_symbol_are_left_out() -> None:
    many = [f"S{index:04d}USDT" for index in range(2500)]
    value = encode_served(served("main", many))
    assert len(value) < 16_384  # 2,500 symbols: ~33 KB of JSON, a few KB compressed
    assert decode_served(value).symbols == many
    hostile = zlib.compress(served("main", ["BTCUSDT", "btc", "A.B", "X" * 40, ">"]).model_dump_json().encode())
    assert decode_served(hostile).symbols == ["BTCUSDT"]


@pytest.mark.parametrize(
    "value",
    [
        b"not zlib at all",
        zlib.compress(b"[" * (MAX_SERVED_JSON + 1)),  # inflates past the bound: refused before it is all inflated
        zlib.compress(b'{"v": 2}'),
        zlib.compress(b'{"v": 1, "shard": "main"}')[:-3],  # cut short
    ],
)
def test_a_value_that_is_no_served_list_is_refused(value: bytes) -> None:
    with pytest.raises(ServedFormatError):
        decode_served(value)


def test_a_list_above_the_bound_is_not_encoded() -> None:
    with pytest.raises(ServedFormatError, match="TRADETAPE_SHARD_COUNT"):
        encode_served(served("main", [f"S{index:027d}USDT" for index in range(MAX_SERVED_JSON // 30)]))


async def test_the_reader_takes_every_shard_and_leaves_out_what_is_not_a_served_list(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        assert await read_served(js) == {}  # no bucket yet: nothing served, no error
        await publish_served(js, served("s0", ["BTCUSDT"]), max_payload=nc.max_payload)
        await publish_served(js, served("s1", ["ETHUSDT", "SOLUSDT"]), max_payload=nc.max_payload)
        kv = await js.create_key_value(served_config())
        await kv.put("garbage", b"\x00" * 100)
        await kv.put("s2", encode_served(served("s0", ["XRPUSDT"])))  # another shard's list under this key
        await kv.put("gone", encode_served(served("gone", ["ADAUSDT"])))
        await kv.delete("gone")
        lists = await read_served(js)
        assert sorted(lists) == ["s0", "s1"] and SERVED_BUCKET == "TAPE_SERVED"
        assert served_methods(lists) == {s: ["bars", "coverage"] for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT")}
        with pytest.raises(ServedFormatError, match="max payload"):
            await publish_served(js, served("s3", [f"S{index:06d}USDT" for index in range(20_000)]), max_payload=1024)
    finally:
        await nc.close()
