"""Replies go to inboxes only: the rule, the guard on a plain subscription and on nats micro's `$SRV` verbs,
and the role's inbox prefix given to every connection (a real nats-server without permissions, so the
guard alone is what refuses)."""

from __future__ import annotations

import asyncio
import logging

import nats
import orjson
import pytest
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from tradetape.bus.auth import NatsAuth
from tradetape.bus.connect import connect
from tradetape.bus.nats_internals import MicroClient
from tradetape.bus.replies import MAX_REPLY_SUBJECT, GuardedService, ReplyGuard, is_reply_subject
from tradetape.ground.inboxes import ROLE_INBOX_PREFIXES
from tradetape.runtime.metrics import announce
from tradetape.settings import Settings

pytestmark = pytest.mark.timeout(30)

FORBIDDEN = (
    "$KV.TAPE_INGEST_LEDGER.binance.ETHUSDT",
    "tape.trades.binance.ETHUSDT",
    "tape.live.profile.BTCUSDT",
    "$JS.API.STREAM.DELETE.TAPE_TRADES",
    "_INBOX",
    "_INBOX.",
    "_INBOX..x",
    "_INBOX.x.",
    "_INBOX.*",
    "_INBOX.>",
    "_INBOX.x.>",
    "_INBOX.a*b",
    "_INBOX.a b",
    "_INBOX.a\tb",
    "_INBOX.a\r\nPUB tape.trades.binance.X 2",
    "_INBOX_.x",
    "_INBOX_query.x",
    "_INBOXQUERY.x",
    "_INBOX_QUERY",
    "x._INBOX.y",
    "_INBOX.é",
    "_INBOX." + "x" * MAX_REPLY_SUBJECT,
    "",
)
ON_THE_WIRE = tuple(s for s in FORBIDDEN if s and not any(c.isspace() for c in s))
"""What a client can send as a reply subject at all (the protocol splits on blanks)."""


def test_only_inbox_subjects_are_reply_subjects() -> None:
    assert is_reply_subject("_INBOX.Gx4pA2Y0qXhPzD5fR1n8sK")
    assert is_reply_subject("_INBOX_QUERY.Gx4pA2Y0qXhPzD5fR1n8sK.17")
    assert all(is_reply_subject(f"{prefix}.a.b") for prefix in ROLE_INBOX_PREFIXES.values())
    assert is_reply_subject("_INBOX_A1.x-y_z")
    refused = [subject for subject in FORBIDDEN if is_reply_subject(subject)]
    assert refused == []


def test_the_inbox_prefix_setting_takes_role_prefixes_only() -> None:
    for prefix in ("_INBOX", *ROLE_INBOX_PREFIXES.values()):
        assert Settings(nats_inbox_prefix=prefix).nats_inbox_prefix == prefix
    for bad in ("_INBOX.x", "_INBOX_", "_INBOX_query", "INBOX", "_INBOX_A.>", "tape", ""):
        with pytest.raises(ValueError):
            Settings(nats_inbox_prefix=bad)


async def test_a_guarded_handler_answers_inboxes_and_drops_the_rest_with_one_warning(
    nats_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    responder, requester = await nats.connect(nats_url), await nats.connect(nats_url)
    guard = ReplyGuard("test")
    handled: list[str] = []

    async def handler(msg: Msg) -> None:
        handled.append(msg.reply)
        await msg.respond(b"answer")

    try:
        await responder.subscribe("svc.ask", cb=guard.guarded(handler))
        await responder.flush()
        watch = await requester.subscribe(">")
        with caplog.at_level(logging.WARNING, logger="tradetape.bus.replies"):
            for subject in ON_THE_WIRE:
                await requester.publish("svc.ask", b"{}", reply=subject)
            await requester.publish("svc.ask", b"{}")
            await requester.flush()
            assert (await requester.request("svc.ask", b"{}", timeout=5)).data == b"answer"
        assert len(handled) == 1 and handled[0].startswith("_INBOX.")
        assert guard.errors == {"dropped_reply_subject": len(ON_THE_WIRE), "dropped_without_reply": 1}
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, "rate-limited: one line for a burst"
        assert len(warnings[0].__dict__["reply"]) <= 80
        seen = []
        while True:
            try:
                seen.append((await watch.next_msg(timeout=0.3)).subject)
            except NatsTimeoutError:
                break
        assert [s for s in seen if s != "svc.ask"] == [handled[0]], "the one answer went to the inbox, nothing else"
    finally:
        await requester.close()
        await responder.close()


@pytest.mark.slow
@pytest.mark.parametrize("verb", ["PING", "INFO", "STATS"])
async def test_micro_verbs_in_every_form_answer_inboxes_only(nats_url: str, verb: str) -> None:
    responder, requester = await nats.connect(nats_url), await nats.connect(nats_url)
    guard = ReplyGuard("persist")
    presence = await announce(responder, "persist", {"shard": "main"}, guard)
    try:
        instance = presence.service.id
        forms = (f"$SRV.{verb}", f"$SRV.{verb}.tradetape-persist", f"$SRV.{verb}.tradetape-persist.{instance}")
        target = await requester.subscribe("tape.>")
        for subject in forms:
            await requester.publish(subject, b"", reply="tape.trades.binance.ETHUSDT")
        await requester.flush()
        for subject in forms:
            answer = orjson.loads((await requester.request(subject, b"", timeout=5)).data)
            assert answer["id"] == instance
        with pytest.raises(NatsTimeoutError):
            await target.next_msg(timeout=0.3)
        assert guard.dropped_reply_subject == len(forms)
    finally:
        await presence.stop()
        await requester.close()
        await responder.close()


async def test_micro_gets_a_client_that_refuses_what_the_guard_does_not_cover(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        client = MicroClient(nc, ReplyGuard("test").guarded)
        with pytest.raises(RuntimeError, match="Client.publish"):
            await client.publish("x", b"")
        with pytest.raises(RuntimeError, match="without a callback"):
            await client.subscribe("x")
        service = await GuardedService.start(nc, ReplyGuard("test"), name="probe", version="1.0.0")
        await service.add_endpoint(name="ask", subject="probe.ask", handler=_answer)
        assert (await nc.request("probe.ask", b"", timeout=5)).data == b"ok"
        await service.stop()
    finally:
        await nc.close()


async def _answer(request: object) -> None:
    await request.respond(b"ok")  # type: ignore[attr-defined]


async def test_each_connection_makes_its_inboxes_under_its_role_prefix(nats_url: str) -> None:
    settings = Settings(nats_url=nats_url, nats_inbox_prefix="_INBOX_QUERY")
    nc = await connect(nats_url, "probe", auth=NatsAuth.from_settings(settings), retry=False)
    other = await nats.connect(nats_url)
    try:
        assert nc.new_inbox().startswith("_INBOX_QUERY.")
        replies: list[str] = []

        async def echo(msg: Msg) -> None:
            replies.append(msg.reply)
            await msg.respond(b"ok")

        await other.subscribe("probe.ask", cb=echo)
        await other.flush()
        # nats-py writes a flush's PING at once and the SUB before it from its buffer, later: the server can answer
        # the PING before it knows the subscriber (a CI run's request found no responders), so ask until it does
        for _ in range(50):
            try:
                await nc.request("probe.ask", b"", timeout=5)
                break
            except NoRespondersError:
                await asyncio.sleep(0.1)
        await nc.jetstream().account_info()
        await asyncio.sleep(0)
        assert replies and all(reply.startswith("_INBOX_QUERY.") for reply in replies)
    finally:
        await other.close()
        await nc.close()
