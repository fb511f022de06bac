import orjson
import pytest

from tradetape.binance.frames import AggTradeFrame, ControlFrame, FrameError, ReplyFrame, parse_frame

SYMBOLS = frozenset({"BTCUSDT", "ETHUSDT"})
DATA = {
    "e": "aggTrade",
    "E": 2,
    "s": "BTCUSDT",
    "a": 7,
    "p": "1.50",
    "q": "2",
    "f": 1,
    "l": 1,
    "T": 1_767_225_600_003,
    "m": False,
    "M": True,
}


def test_combined_frame_keeps_the_raw_object() -> None:
    frame = parse_frame(orjson.dumps({"stream": "btcusdt@aggTrade", "data": DATA}), SYMBOLS)
    assert isinstance(frame, AggTradeFrame)
    assert frame.symbol == "BTCUSDT" and frame.data == DATA and frame.row.price == 150_000_000


def test_raw_stream_frame() -> None:
    assert isinstance(parse_frame(orjson.dumps(DATA), SYMBOLS), AggTradeFrame)


def test_control_event() -> None:
    assert parse_frame(b'{"e":"serverShutdown","E":1}', SYMBOLS) == ControlFrame("serverShutdown")


@pytest.mark.parametrize(
    ("text", "reason", "symbol"),
    [
        (b"{not json", "invalid JSON", None),
        (b"[1]", "not an object", None),
        (orjson.dumps({"stream": "btcusdt@aggTrade", "data": {**DATA, "p": "x"}}), "not a plain decimal", "BTCUSDT"),
        (
            orjson.dumps({"stream": "btcusdt@aggTrade", "data": {k: v for k, v in DATA.items() if k != "q"}}),
            "'q'",
            "BTCUSDT",
        ),
        (orjson.dumps({"stream": "solusdt@aggTrade", "data": {**DATA, "s": "SOLUSDT"}}), "not subscribed", None),
        (orjson.dumps({"stream": "ethusdt@aggTrade", "data": DATA}), "does not match", "BTCUSDT"),
        (orjson.dumps({"stream": "btcusdt@aggTrade", "data": {**DATA, "e": None}}), "event type", None),
    ],
)
def test_malformed_frames_have_specific_reasons(text: bytes, reason: str, symbol: str | None) -> None:
    with pytest.raises(FrameError, match=reason) as info:
        parse_frame(text, SYMBOLS)
    assert info.value.symbol == symbol


def test_subscribe_replies() -> None:
    assert parse_frame(b'{"result":null,"id":3}', SYMBOLS) == ReplyFrame(3, None)
    reply = parse_frame(b'{"error":{"code":2,"msg":"Invalid request"},"id":4}', SYMBOLS)
    assert isinstance(reply, ReplyFrame) and reply.request_id == 4 and "Invalid request" in (reply.error or "")
    with pytest.raises(FrameError, match="reply id"):
        parse_frame(b'{"result":null,"id":"x"}', SYMBOLS)


def test_oversized_frames_are_refused_before_parsing() -> None:
    frame = orjson.dumps({"stream": "btcusdt@aggTrade", "data": {**DATA, "x": "a" * 2000}})
    with pytest.raises(FrameError, match="over the 1024 byte cap") as info:
        parse_frame(frame, SYMBOLS, max_bytes=1024)
    assert info.value.kind == "oversized"
    assert isinstance(parse_frame(frame, SYMBOLS, max_bytes=4096), AggTradeFrame)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"q": "1\u00b2"}, "not a plain decimal"),
        ({"p": "92233720369.00000000"}, "exceeds"),
        ({"a": 2**63}, "'a'"),
        ({"T": 1_767_225_600}, "'T'"),
    ],
)
def test_values_strict_validation_refuses(change: dict[str, object], reason: str) -> None:
    text = orjson.dumps({**DATA, **change})
    with pytest.raises(FrameError, match=reason) as info:
        parse_frame(text, SYMBOLS)
    assert info.value.kind == "invalid_trade" and info.value.symbol == "BTCUSDT"
