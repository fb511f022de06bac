"""Messages sent with an ack each: numbered reply subjects under one inbox, matched oldest first.

The publisher's lane for dead letters and for servers or streams without fast-ingest
batches. A JetStream publish is a plain publish with a reply subject; numbering them
`<inbox>.<n>` lets one wildcard subscription take every ack, and an ack for a message
already given up (re-sent under a new number) is recognised and ignored. Pure: the
caller publishes and waits.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

from tradetape.bus.publish.fast_batch import ReplyKind, read_batch_reply

T = TypeVar("T")


class NumberedAcks(Generic[T]):
    def __init__(self) -> None:
        self._inflight: dict[int, tuple[T, float]] = {}
        """By ack number: the message and its ack deadline."""
        self._order: deque[int] = deque()
        """The ack numbers in flight, oldest first (a dict emptied from the front iterates slowly)."""
        self._bodies: dict[int, bytes] = {}
        """Ack bodies received for messages still in flight, by ack number."""
        self._numbered = 0
        self.stale = 0

    def __len__(self) -> int:
        return len(self._inflight)

    def next_number(self) -> int:
        """The number of the next message's reply subject."""
        self._numbered += 1
        return self._numbered

    def sent(self, number: int, item: T, deadline: float) -> None:
        self._inflight[number] = (item, deadline)
        self._order.append(number)

    def answered(self, number: str, body: bytes) -> bool:
        """Keep an ack (`number` as it stood in the subject); False if nothing in flight has that number."""
        if not number.isdecimal() or int(number) not in self._inflight:
            self.stale += 1
            return False
        self._bodies[int(number)] = body
        return True

    def oldest(self) -> tuple[T, float, bytes | None] | None:
        """The oldest message in flight, its ack deadline and its ack if it came; None if none is in flight."""
        if not self._order:
            return None
        number = self._order[0]
        item, deadline = self._inflight[number]
        return item, deadline, self._bodies.get(number)

    def settle_oldest(self) -> None:
        """The oldest message is done with (acked, refused or timed out)."""
        number = self._order.popleft()
        del self._inflight[number]
        self._bodies.pop(number, None)


def read_ack(body: bytes) -> tuple[str | None, bool]:
    """A JetStream publish reply: (why the message was not stored, or None; whether it was a duplicate).

    The same reader as a batch's closing pub ack: an empty body (no responders), an error
    (a full stream, say) or anything unreadable is retried like a lost ack.
    """
    reply = read_batch_reply(body)
    if reply.kind is ReplyKind.END:
        return None, reply.duplicate
    return reply.error or f"not a pub ack: {body[:80]!r}", False
