import orjson
import pytest

from services.ingest.wire import (
    MAX_URL_CHARS,
    STREAMS_PER_SUBSCRIBE,
    AggTradeFrame,
    ControlFrame,
    FrameError,
    ReplyFrame,
    combined_stream_url,
    connection_plan,
    parse_frame,
    subscribe_request,
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


def test_many_streams_go_partly_into_the_url_and_the_rest_by_subscribe() -> None:
    symbols = tuple(f"SYM{i:04d}USDT" for i in range(1024))
    url, batches = connection_plan("wss://x", symbols)
    in_url = url.split("streams=", 1)[1].split("/")
    assert len(url) <= MAX_URL_CHARS
    assert in_url + [s for batch in batches for s in batch] == [f"{s.lower()}@aggTrade" for s in symbols]
    assert all(len(batch) <= STREAMS_PER_SUBSCRIBE for batch in batches)
    assert orjson.loads(subscribe_request(batches[0], 5)) == {"method": "SUBSCRIBE", "params": batches[0], "id": 5}
    assert connection_plan("wss://x", ("BTCUSDT",)) == ("wss://x/stream?streams=btcusdt@aggTrade", [])
