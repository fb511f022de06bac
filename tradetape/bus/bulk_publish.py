"""Many JetStream publishes with a `Nats-Msg-Id` each, handed to nats-py as one write.

Why: under `bench/ingest.py`, nats-py's `publish` was a fifth of ingest's CPU (py-spy),
most of it building the header block of every message (a regex check of the key, strip,
translate, encode) and validating subjects that ingest builds itself from checked
symbols. `hpub` writes the same `HPUB` protocol line and header block in one f-string;
`BulkPublish.send` hands a run of them to the client's outgoing buffer at once and kicks
its flusher, as `publish` does. That uses two private methods of nats-py's client
(`_send_command`, `_flush_pending`); a client without them gets `publish` per message
instead, and `tests/bus/test_bulk_publish.py` checks the bytes against nats-py's own.
"""

from __future__ import annotations

from nats.aio.client import Client

from tradetape.bus.subjects import MSG_ID_HEADER

_HEADER_HEAD = f"NATS/1.0\r\n{MSG_ID_HEADER}: "
_HEADER_OVERHEAD = len(_HEADER_HEAD) + 4
"""The header block is ASCII: its byte length is the length of these strings and the message id."""


def hpub(subject: str, reply: str, msg_id: str, payload: bytes) -> bytes:
    """The protocol bytes of one publish with a reply subject and a `Nats-Msg-Id` header (all ASCII)."""
    header_len = _HEADER_OVERHEAD + len(msg_id)
    head = f"HPUB {subject} {reply} {header_len} {header_len + len(payload)}\r\n{_HEADER_HEAD}{msg_id}\r\n\r\n"
    return head.encode() + payload + b"\r\n"


class BulkPublish:
    """Publishes gathered with `add` and sent, in order, by `flush`."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self.direct = hasattr(nc, "_send_command") and hasattr(nc, "_flush_pending")
        """False: this nats-py has no such internals, and every message goes through `publish`."""
        self._commands: list[bytes] = []
        self._messages: list[tuple[str, str, str, bytes]] = []

    def add(self, subject: str, reply: str, msg_id: str, payload: bytes) -> None:
        """Gather one publish; the caller has checked the connection and the max payload, as `publish` would."""
        if self.direct:
            self._commands.append(hpub(subject, reply, msg_id, payload))
        else:
            self._messages.append((subject, reply, msg_id, payload))

    async def flush(self) -> None:
        """Hand what was gathered to the client: one buffer append and a kick of its flusher."""
        nc = self._nc
        if self._commands:
            command = b"".join(self._commands)
            self._commands.clear()
            await nc._send_command(command)
            if nc._flush_queue is not None and nc._flush_queue.empty():
                await nc._flush_pending()
        messages, self._messages = self._messages, []
        for subject, reply, msg_id, payload in messages:
            await nc.publish(subject, payload, reply=reply, headers={MSG_ID_HEADER: msg_id})
