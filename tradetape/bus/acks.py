"""Acks of many JetStream messages handed to nats-py as one buffer append.

Why: at 10,000 trades/s persist acked every message with `Msg.ack`, a `Client.publish` each
(subject checks, the `PUB` line built, the buffer appended, the flusher kicked): 7 % of
persist's samples under py-spy, and as much again in the flusher's socket writes of the
small commands. `ack_all` writes the same empty-payload `PUB <reply> 0` that `Msg.ack`
sends (an empty ack is `+ACK` to the server) for all of a write's messages in two joins,
through `tradetape.bus.nats_internals.OutgoingBuffer`.
"""

from __future__ import annotations

from collections.abc import Sequence

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import BadSubjectError, ConnectionClosedError, ConnectionDrainingError, NotJSMessageError

from tradetape.bus.nats_internals import OutgoingBuffer


class BulkAcks:
    """Acks a run of messages of one client's subscriptions at once."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._buffer = OutgoingBuffer(nc)

    async def ack_all(self, msgs: Sequence[Msg]) -> None:
        """Ack every message of `msgs` as `Msg.ack` would, in order; nothing is sent if one cannot be acked.

        `NotJSMessageError` for a message without a reply subject, `BadSubjectError` for a reply
        with whitespace (it would inject protocol), as nats-py raises them.
        """
        if not msgs:
            return
        replies = [msg.reply for msg in msgs]
        if not all(replies):
            raise NotJSMessageError
        joined = "\n".join(replies)
        if len(joined.split()) != len(replies):  # a reply holding whitespace, CR or LF splits apart
            raise BadSubjectError
        if self._nc.is_closed:
            raise ConnectionClosedError
        if self._nc.is_draining_pubs:
            raise ConnectionDrainingError
        command = "PUB " + joined.replace("\n", " 0\r\n\r\nPUB ") + " 0\r\n\r\n"
        await self._buffer.append(command.encode())
