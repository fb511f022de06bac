"""The gap ledger's value codec, and reading it back from a real NATS KV bucket."""

from __future__ import annotations

import nats
import pytest

from tradetape.bus.ledger import (
    MAX_LEDGER_GAPS,
    LedgerEntry,
    LedgerFormatError,
    LedgerGap,
    decode_entry,
    encode_entry,
    ledger_bucket,
    open_gaps,
    write_entry,
)

pytestmark = pytest.mark.timeout(30)

ENTRY = LedgerEntry("BTCUSDT", 100, 150, 5_000, (LedgerGap(101, 104, 4_000, 2, "HTTP 503"), LedgerGap(160, 160, 4_900)))


def test_round_trip_and_views() -> None:
    assert decode_entry(encode_entry(ENTRY)) == ENTRY
    assert ENTRY.missing == 5
    assert ENTRY.gaps[0].age_ms(5_000) == 1_000


@pytest.mark.parametrize(
    "value",
    [
        b"not json",
        b'{"v": 2}',
        b'{"v": 1, "symbol": "X", "watermark": "1", "last_id": 1, "updated_ms": 0, "gaps": []}',
        b'{"v": 1, "symbol": "X", "watermark": 5, "last_id": 4, "updated_ms": 0, "gaps": []}',
        b'{"v": 1, "symbol": "X", "watermark": 5, "last_id": 9, "updated_ms": 0,'
        b' "gaps": [{"from_id": 5, "to_id": 6, "opened_ms": 0, "attempts": 0, "last_error": ""}]}',
    ],
)
def test_malformed_values_are_refused(value: bytes) -> None:
    with pytest.raises(LedgerFormatError):
        decode_entry(value)


def test_too_many_gaps_are_merged_at_the_top() -> None:
    gaps = tuple(LedgerGap(10 * i + 1, 10 * i + 2, i) for i in range(MAX_LEDGER_GAPS + 5))
    decoded = decode_entry(encode_entry(LedgerEntry("X", 0, 0, 0, gaps)))
    assert len(decoded.gaps) == MAX_LEDGER_GAPS
    assert (decoded.gaps[-1].from_id, decoded.gaps[-1].to_id) == (gaps[MAX_LEDGER_GAPS - 1].from_id, gaps[-1].to_id)


async def test_open_gaps_reads_the_bucket(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        assert await open_gaps(js, "BTCUSDT") == [], "no bucket yet: no gaps"
        kv = await ledger_bucket(js, create=True)
        assert kv is not None
        await write_entry(kv, ENTRY)
        assert await open_gaps(js, "BTCUSDT") == list(ENTRY.gaps)
        assert await open_gaps(js, "ETHUSDT") == []
    finally:
        await nc.close()
