import orjson
import pytest

from services.ingest.wire import (
    AggTradeFrame,
    ControlFrame,
    FrameError,
    combined_stream_url,
    parse_frame,
)

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


def test_combined_stream_url() -> None:
    assert combined_stream_url("wss://data-stream.binance.vision/", ("BTCUSDT", "ETHUSDT")) == (
        "wss://data-stream.binance.vision/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade"
    )


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
