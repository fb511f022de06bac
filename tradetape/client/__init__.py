"""The Python client: any registered query method over NATS, replies as typed models.

    async with await TapeClient.connect() as tape:
        profile = await tape.query("volume_profile", "BTCUSDT", last="1h")
        rows = profile.to_polars()
        async for frame in tape.replay(["BTCUSDT", "ETHUSDT"], start=..., end=...):
            ...  # polars DataFrames of stored trades, merged by time

It finds the server as the CLI does (`NATS_URL`, else `<data dir>/nats.url`), checks a
request against the method's model before sending it, and raises:

    TapeError
    ├── ClientQueryError  an error reply (`code`, `message`, `details`; a `tradetape.api.errors.QueryError`),
    │                     or a request refused before it is sent (an unknown method: the known ones listed)
    └── TapeUnavailable   NATS unreachable, nobody serving the method and symbol (`served`: what is, from the
                          served lists analytics keeps in NATS KV, `tradetape.bus.served`), or no reply in time

`SyncTapeClient` is the same for code that is not async (scripts, notebooks).

Modules: `queries` (the connection and request-reply queries), `live` (live profile, bars, trades),
`replay` (stored ranges streamed back), `tape` (`TapeClient`, all three), `sync`, `errors`.
"""

from tradetape.client.errors import (
    ERROR_CODE_HEADER,
    SHOWN_SYMBOLS,
    UNSERVED,
    ClientQueryError,
    TapeError,
    TapeUnavailable,
    describe_served,
)
from tradetape.client.live import LIVE_BARS_CHUNK_MS, LIVE_JOIN_ATTEMPTS, LIVE_TRADES_QUEUE, LIVE_TRADES_RETRY_S
from tradetape.client.queries import DEFAULT_TIMEOUT_S
from tradetape.client.replay import MAX_REPLAY_INSTRUMENTS, PACE_SPIN_S, REPLAY_RESUMES
from tradetape.client.sync import SyncTapeClient
from tradetape.client.tape import TapeClient

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "ERROR_CODE_HEADER",
    "LIVE_BARS_CHUNK_MS",
    "LIVE_JOIN_ATTEMPTS",
    "LIVE_TRADES_QUEUE",
    "LIVE_TRADES_RETRY_S",
    "MAX_REPLAY_INSTRUMENTS",
    "PACE_SPIN_S",
    "REPLAY_RESUMES",
    "SHOWN_SYMBOLS",
    "UNSERVED",
    "ClientQueryError",
    "SyncTapeClient",
    "TapeClient",
    "TapeError",
    "TapeUnavailable",
    "describe_served",
]
