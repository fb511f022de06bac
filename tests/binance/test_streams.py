import orjson

from tradetape.binance.streams import (
    MAX_URL_CHARS,
    STREAMS_PER_SUBSCRIBE,
    combined_stream_url,
    connection_plan,
    subscribe_request,
)


def test_combined_stream_url() -> None:
    assert combined_stream_url("wss://data-stream.binance.vision/", ("BTCUSDT", "ETHUSDT")) == (
        "wss://data-stream.binance.vision/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade"
    )


def test_many_streams_go_partly_into_the_url_and_the_rest_by_subscribe() -> None:
    symbols = tuple(f"SYM{i:04d}USDT" for i in range(1024))
    url, batches = connection_plan("wss://x", symbols)
    in_url = url.split("streams=", 1)[1].split("/")
    assert len(url) <= MAX_URL_CHARS
    assert in_url + [s for batch in batches for s in batch] == [f"{s.lower()}@aggTrade" for s in symbols]
    assert all(len(batch) <= STREAMS_PER_SUBSCRIBE for batch in batches)
    assert orjson.loads(subscribe_request(batches[0], 5)) == {"method": "SUBSCRIBE", "params": batches[0], "id": 5}
    assert connection_plan("wss://x", ("BTCUSDT",)) == ("wss://x/stream?streams=btcusdt@aggTrade", [])
