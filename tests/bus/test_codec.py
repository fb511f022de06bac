"""`TradeDecoder.decode` (a fetched batch in one call) equals `decode_trade` message by message: the same rows, the
same refusals with the same reasons, on hostile payloads and with decimals remembered from earlier batches."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradetape.binance.aggtrade import MAX_AHEAD_MS, MAX_ID, MIN_TIME_MS, TradeFormatError
from tradetape.bus.codec import TradeDecoder, decode_trade
from tradetape.domain.trade import TradeRow

NOW_MS = 1_767_225_600_000
GOOD: dict[str, Any] = {
    "e": "aggTrade",
    "E": NOW_MS,
    "s": "BTCUSDT",
    "a": 12,
    "p": "87648.21000000",
    "q": "0.08185000",
    "f": 100,
    "l": 101,
    "T": NOW_MS - 5,
    "m": True,
    "M": True,
}
EDGE_DECIMALS = [
    "0", "0.0", "0.00000000", "1", "1.", ".5", "+1", "-1", " 1", "1 ", "1e5", "1_0", "١٢", "0x10", "1.2.3", "",
    "0.000000001", "0.000000010", "1.123456780000", "92233720368.54775807", "92233720368.54775808",
    "0" * 39 + "1", "0" * 41 + "1", "87648.21000000", "0.08185000",
]  # fmt: skip
decimals = st.one_of(
    st.sampled_from(EDGE_DECIMALS),
    st.sampled_from(["0", "0.0", "0.00000000", "0.00000001", "1"]),
    st.from_regex(r"-?[0-9]{0,22}(\.[0-9]{0,11})?", fullmatch=True),
    st.text(max_size=10),
)
edge_ints = [-2, -1, 0, 1, MAX_ID - 1, MAX_ID, MAX_ID + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1]
ints = st.one_of(st.sampled_from(edge_ints), st.integers(-3, 200), st.integers(-(2**70), 2**70))
times = st.one_of(
    st.sampled_from([MIN_TIME_MS - 1, MIN_TIME_MS, NOW_MS + MAX_AHEAD_MS, NOW_MS + MAX_AHEAD_MS + 1]),
    st.integers(MIN_TIME_MS - 10, NOW_MS + MAX_AHEAD_MS + 10),
)
odd = st.one_of(
    st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=4), st.just([1])
)
FIELDS = {"a": ints, "f": ints, "l": ints, "T": times, "m": st.booleans(), "p": decimals, "q": decimals, "nq": decimals}


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    """A trade message from near-valid to junk: fields changed, dropped, repeated (duplicate keys), or not JSON."""
    kind = draw(st.sampled_from(["trade", "trade", "trade", "json", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=40))
    if kind == "json":
        return json.dumps(draw(st.one_of(odd, st.lists(st.integers(), max_size=3)))).encode()
    obj = dict(GOOD)
    if draw(st.booleans()):
        obj["nq"] = draw(st.one_of(decimals, st.sampled_from(["0", "0.08185000", "0.08185001", "0.5"])))
    if draw(st.integers(0, 5)) == 0:  # voids and near-voids
        obj.update(p=draw(st.sampled_from(["0", "0.0", "0.00000000", "1"])), q="0", f=-1, l=-1)
    for _ in range(draw(st.integers(0, 2))):  # mostly one field wrong, or none
        field = draw(st.sampled_from(sorted(FIELDS)))
        choice = draw(st.sampled_from(["change", "change", "change", "odd", "drop"]))
        if choice == "change":
            obj[field] = draw(FIELDS[field])
        elif choice == "odd":
            obj[field] = draw(odd)
        else:
            obj.pop(field, None)
    text = json.dumps(obj)
    repeated = draw(st.lists(st.tuples(st.sampled_from(sorted(FIELDS)), st.one_of(ints, decimals, odd)), max_size=2))
    for field, value in repeated:  # a key given twice: the last one counts, on both paths
        text = text[:-1] + f", {json.dumps(field)}: {json.dumps(value)}}}"
    return text.encode()


def one_by_one(payload: bytes) -> TradeRow | str:
    try:
        return decode_trade(payload, now_ms=NOW_MS)
    except TradeFormatError as exc:
        return str(exc)


DECODER = TradeDecoder()
"""Shared by every example: decimals remembered from earlier batches must not change a later one."""


@pytest.mark.slow
@settings(max_examples=600, deadline=None)
@given(batch=st.lists(payloads(), max_size=12))
def test_a_batch_decodes_as_its_messages_do_one_by_one(batch: list[bytes]) -> None:
    got = [row if isinstance(row, TradeRow) else str(row) for row in DECODER.decode(batch, now_ms=NOW_MS)]
    assert got == [one_by_one(payload) for payload in batch]
    assert all(not isinstance(row, TradeRow) or type(row.price) is int for row in got)


def test_remembered_decimals_stay_bounded() -> None:
    decoder = TradeDecoder()
    batch = [json.dumps({**GOOD, "a": i, "p": f"{i}.5", "q": f"0.{i:08d}"}).encode() for i in range(1, 40_000)]
    for _ in range(2):
        rows = decoder.decode(batch, now_ms=NOW_MS)
    assert all(isinstance(row, TradeRow) for row in rows)
    assert decoder.remembered <= 2 * 65_536
