"""Fast-ingest batch replies and one batch's bookkeeping, as pure functions."""

from __future__ import annotations

from tradetape.bus.publish.fast_batch import (
    MAX_FLOW,
    OUTSTANDING_ACKS,
    FastBatch,
    Op,
    ReplyKind,
    read_batch_reply,
    reply_base,
    reply_subject,
)


def test_reply_subjects_carry_the_batch_as_the_server_parses_it() -> None:
    base = reply_base("_INBOX.abc", "abc-1")
    assert reply_subject(base, 1, Op.START) == f"_INBOX.abc.abc-1.{MAX_FLOW}.fail.1.0.$FI"
    assert reply_subject(base, 7, Op.COMMIT_EOB) == f"_INBOX.abc.abc-1.{MAX_FLOW}.fail.7.3.$FI"


def test_replies_are_told_apart() -> None:
    assert read_batch_reply(b'{"type":"ack","seq":500,"msgs":250}') == read_batch_reply(
        b'{"type": "ack", "seq": 500, "msgs": 250}'
    )
    flow = read_batch_reply(b'{"type":"ack","seq":500,"msgs":250}')
    assert (flow.kind, flow.seq, flow.flow) == (ReplyKind.FLOW, 500, 250)
    assert read_batch_reply(b'{"type":"gap","last_seq":10,"seq":15}').kind is ReplyKind.GAP
    error = read_batch_reply(b'{"type":"err","seq":9,"error":{"code":400,"description":"maximum messages exceeded"}}')
    assert error.kind is ReplyKind.FLOW_ERROR and error.seq == 9 and "maximum messages" in error.error
    end = read_batch_reply(b'{"stream":"TRADES","seq":1200,"batch":"abc-1","count":812}')
    assert (end.kind, end.seq, end.batched) == (ReplyKind.END, 812, True)
    duplicate = read_batch_reply(b'{"stream":"T","seq":4,"duplicate": true,"batch":"abc-1","count":1}')
    assert duplicate.kind is ReplyKind.END and duplicate.duplicate and duplicate.seq == 1
    plain = read_batch_reply(b'{"stream":"T","seq":4}')
    assert (plain.kind, plain.seq, plain.batched) == (ReplyKind.END, 1, False)
    disabled = read_batch_reply(b'{"error":{"code":400,"err_code":10205,"description":"batch publish not enabled"}}')
    assert disabled.kind is ReplyKind.REFUSED and disabled.error_code == 10205


def test_anything_unreadable_is_a_refusal() -> None:
    for body in (b"", b"<html>", b"[1]", b'{"seq": 1}', b'{"type":"ack","seq":true,"msgs":1}', b"\xff"):
        assert read_batch_reply(body).kind is ReplyKind.REFUSED, body


def test_a_batch_sends_one_message_until_the_server_answered_then_runs_two_acks_ahead() -> None:
    batch: FastBatch[int] = FastBatch("b", "base.")
    assert batch.room() == 1 and batch.next_op() is Op.START
    batch.sent_one(1, now=0.0)
    assert batch.room() == 0 and batch.waiting_since == 0.0
    assert batch.flow_ack(0, 100, now=0.1) == [] and batch.waiting_since is None
    assert batch.room() == 100 * OUTSTANDING_ACKS - 1 and batch.next_op() is Op.APPEND
    for item in range(2, 201):
        batch.sent_one(item, now=0.2)
    assert batch.room() == 0 and batch.waiting_since == 0.2
    assert batch.flow_ack(100, 100, now=0.3) == list(range(1, 101))
    assert batch.room() == 100 and batch.waiting_since == 0.3, "the next ack is due already"
    assert batch.commit(now=0.4) == 201 and batch.room() == 0
    assert batch.confirm(150, now=0.5) == list(range(101, 151)), "the server stored only up to 150"
    assert list(batch.items) == list(range(151, 201))
    assert batch.confirm(120, now=0.6) == [] and batch.acked == 150
