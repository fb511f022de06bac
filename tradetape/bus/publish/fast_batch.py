"""JetStream fast-ingest batches (ADR-50, nats-server ≥ 2.14): reply subjects, replies, one batch's state.

A fast batch is a run of plain publishes whose reply subjects carry the batch: its id,
the most messages per ack the client accepts, the gap mode, the message's sequence in
the batch and the operation (`<inbox>.<id>.<flow>.<gap>.<seq>.<op>.$FI`). The server
answers the first message with its flow (an ack every N messages), then acks every N
persisted messages, and ends the batch with a normal pub ack carrying the count
stored. Compared with an ack a message, the client's per-message work is the publish
alone, and `Nats-Msg-Id` de-duplication still applies: a duplicate is skipped and
counted as done.

tradetape uses gap mode `fail`: a flow ack for sequence N means every message up to N is
stored (or was already), and any lost message, refusal or server restart ends the batch
with a pub ack saying how far it got. What was not confirmed is then sent again, in a
new batch, under the same message ids. Pure: no I/O.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import orjson

SUFFIX = ".$FI"
MAX_FLOW = 500
"""The most messages per ack asked for; the server's own cap is 500."""
OUTSTANDING_ACKS = 2
"""Acks the client runs ahead of: while the server persists one stretch the next is on its way (ADR-50)."""
BATCH_NOT_ENABLED = 10205
"""The stream does not allow batches: publish with an ack a message instead."""

T = TypeVar("T")


class Op(enum.IntEnum):
    START = 0
    APPEND = 1
    COMMIT = 2
    COMMIT_EOB = 3
    """End the batch without storing this (empty) message."""


class ReplyKind(enum.Enum):
    FLOW = "flow"
    """Everything up to `seq` is stored; the server now acks every `flow` messages."""
    GAP = "gap"
    """A message went missing; in gap mode `fail` the closing pub ack follows."""
    FLOW_ERROR = "flow_error"
    """A message was refused (a full stream, say); the closing pub ack follows."""
    END = "end"
    """The batch ended: the first `seq` messages are stored. `batched` False: a server that knows no batches."""
    REFUSED = "refused"
    """An error pub ack (or none: no stream takes the subject); nothing more of the batch is stored."""


@dataclass(frozen=True, slots=True)
class BatchReply:
    kind: ReplyKind
    seq: int = 0
    flow: int = 0
    error: str = ""
    error_code: int = 0
    batched: bool = True
    duplicate: bool = False


def reply_base(inbox: str, batch_id: str) -> str:
    """Everything of a batch's reply subjects before the sequence."""
    return f"{inbox}.{batch_id}.{MAX_FLOW}.fail."


def reply_subject(base: str, seq: int, op: Op) -> str:
    return f"{base}{seq}.{int(op)}{SUFFIX}"


def read_batch_reply(body: bytes) -> BatchReply:
    """What the server said about a batch; anything unreadable counts as a refusal."""
    if not body:
        return BatchReply(ReplyKind.REFUSED, error="no stream answered (no responders)")
    try:
        reply = orjson.loads(body)
    except orjson.JSONDecodeError:
        return BatchReply(ReplyKind.REFUSED, error=f"unreadable reply {body[:80]!r}")
    if not isinstance(reply, dict):
        return BatchReply(ReplyKind.REFUSED, error=f"unreadable reply {body[:80]!r}")
    kind = reply.get("type")
    seq: object = reply.get("seq")
    number = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
    if kind == "ack" and number is not None and type(reply.get("msgs")) is int:
        return BatchReply(ReplyKind.FLOW, seq=number, flow=max(1, reply["msgs"]))
    if kind == "gap":
        return BatchReply(ReplyKind.GAP, seq=number or 0)
    if kind == "err":
        return BatchReply(ReplyKind.FLOW_ERROR, seq=number or 0, error=_describe(reply.get("error")))
    if "error" in reply:
        error = reply["error"]
        code = error.get("err_code") if isinstance(error, dict) else None
        return BatchReply(ReplyKind.REFUSED, error=_describe(error), error_code=code if type(code) is int else 0)
    if number is None or "stream" not in reply:
        return BatchReply(ReplyKind.REFUSED, error=f"unreadable reply {body[:80]!r}")
    count = reply.get("count")
    batched = "batch" in reply and isinstance(count, int)
    return BatchReply(
        ReplyKind.END,
        seq=count if batched and isinstance(count, int) else 1,
        batched=batched,
        duplicate=reply.get("duplicate") is True,
    )


def _describe(error: object) -> str:
    return f"jetstream refused the message: {error!r}"[:200]


@dataclass(slots=True)
class FastBatch(Generic[T]):
    """One batch in flight: what was sent and is not yet confirmed, in sequence order."""

    id: str
    base: str
    subject: str = ""
    """The subject of the last message sent: the closing message goes to the same stream."""
    items: deque[T] = field(default_factory=deque)
    """Sent, not confirmed: sequences `acked + 1 .. sent`."""
    sent: int = 0
    acked: int = 0
    flow: int = 0
    """The server's messages per ack; 0 until it answered the first message."""
    committing: bool = False
    failed: str = ""
    """Why the server will end the batch (a refused message); nothing more is sent into it."""
    waiting_since: float | None = None
    """Since when an answer is due (the first message's, a flow ack's or the closing one)."""

    def room(self) -> int:
        """How many more messages may be sent now."""
        if self.committing or self.failed:
            return 0
        if not self.flow:
            return 0 if self.sent else 1
        return self.acked + self.flow * OUTSTANDING_ACKS - self.sent

    def next_op(self) -> Op:
        return Op.START if self.sent == 0 else Op.APPEND

    def sent_one(self, item: T, now: float) -> None:
        self.sent += 1
        self.items.append(item)
        if self.waiting_since is None and self._answer_due():
            self.waiting_since = now

    def commit(self, now: float) -> int:
        """Mark the batch as ending; returns the sequence of the closing (not stored) message."""
        self.committing = True
        if self.waiting_since is None:
            self.waiting_since = now
        return self.sent + 1

    def flow_ack(self, seq: int, flow: int, now: float) -> list[T]:
        """The server's flow ack: its messages per ack from now on, and the items it confirms."""
        self.flow = flow
        return self.confirm(seq, now)

    def confirm(self, seq: int, now: float) -> list[T]:
        """Take the items up to `seq` off the unconfirmed ones, oldest first."""
        upto = min(seq, self.sent)
        confirmed: list[T] = []
        if upto > self.acked:
            items = self.items
            confirmed = [items.popleft() for _ in range(upto - self.acked)]
            self.acked = upto
        self.waiting_since = now if self._answer_due() else None
        return confirmed

    def _answer_due(self) -> bool:
        return self.committing or not self.flow or self.sent >= self.acked + self.flow
