"""Replay: a stored range streamed back over NATS, one stream an instrument, with credit-based flow control.

A client publishes a `ReplayRequest` (JSON) to `tape.replay.open.<instrument token>` with its inbox
as the reply subject. The worker of the instrument's shard answers on that inbox with a sequence
of msgpack messages (`chunks`): a `ReplayStart` naming the stream's flow subject and the chunk
size and window in force, then `ReplayChunk`s numbered from 0 (each the trades' columns, in
`(time, agg id)` order), then a `ReplayEnd` with the number of chunks and trades sent. An error
at any point is one message with the NATS micro error headers and an `ErrorReply` body, as every
query error, and ends the stream.

Flow control: the client answers the start with a flow message (`{}` or an ack) before any chunk is sent: only a
reader of the inbox learns the flow subject, so a request aimed at someone else's inbox sends it the start alone.
Then the worker sends chunk `seq` only while `seq - acked <= window`, where `acked` is
the highest chunk the client acknowledged on the flow subject (`FlowMessage`: `{"ack": seq}`, or
`{"cancel": true}` to stop at once). A slow client therefore holds the worker to `window` chunks
in flight; a vanished client stops the stream once no ack has come for the worker's idle timeout.
The client merges instruments by `(time, symbol, agg id)` (`merging`) and may pace the merged
trades by trade time (`pacing`).
"""

from tradetape.api.replay.chunks import ReplayChunk, ReplayEnd, ReplayStart, decode_message, trade_frame
from tradetape.api.replay.protocol import (
    DEFAULT_CHUNK,
    DEFAULT_WINDOW,
    MAX_CHUNK,
    MAX_WINDOW,
    FlowMessage,
    ReplayRequest,
    unknown_instrument,
)

__all__ = [
    "DEFAULT_CHUNK",
    "DEFAULT_WINDOW",
    "MAX_CHUNK",
    "MAX_WINDOW",
    "FlowMessage",
    "ReplayChunk",
    "ReplayEnd",
    "ReplayRequest",
    "ReplayStart",
    "decode_message",
    "trade_frame",
    "unknown_instrument",
]
