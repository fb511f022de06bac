"""Replies go to inboxes only: the rule every responder of tradetape checks a reply subject against, and the guard.

nats-server (client.go `deliverMsg`, `pubAllowedFullCheck`): with `allow_responses` a client may publish to
any reply subject it was delivered, checked only after its publish allow *and deny* lists refused, so no
deny list can stop a requester from aiming a responder's answer at a trade subject, a KV key or a live
subject: the responder has to refuse the reply subject itself (and auth.conf gives responders no
`allow_responses`, only the inbox namespaces of the roles that ask them).

A reply subject is answered when it lies in the inbox namespace: first token `_INBOX` or
`_INBOX_<ROLE>` (each role's connection creates its inboxes under its own prefix, so each role
may read its own replies only), at least one more token, no wildcard, no blank, at most
`MAX_REPLY_SUBJECT` characters. Anything else is dropped before any work and counted
(`dropped_reply_subject`; `dropped_without_reply` when there is none), with a warning at most
every `WARN_EVERY_S`.

nats micro subscribes its `$SRV.PING|INFO|STATS` verbs and endpoints itself: `GuardedService`
hands it a client whose `subscribe` wraps every callback in the guard
(`tradetape.bus.nats_internals.MicroClient`, which knows which parts of nats-py's client micro
uses); it fails at start if a nats-py release subscribes around it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.micro import add_service
from nats.micro.service import Service

from tradetape.bus.nats_internals import MicroClient

logger = logging.getLogger(__name__)

MAX_REPLY_SUBJECT = 256
"""Inboxes of nats-py and nats.js are under 70 characters; the bound only caps what a log line copies."""
WARN_EVERY_S = 10.0
LOGGED_SUBJECT_CHARS = 80
MICRO_VERB_SUBSCRIPTIONS = 9
"""`$SRV.PING|INFO|STATS`, each in its all, kind and id form."""

_REPLY_SUBJECT = re.compile(r"_INBOX(?:_[A-Z0-9]+)?(?:\.[^.*>\s]+)+")

MsgHandler = Callable[[Msg], Awaitable[None]]


def is_reply_subject(subject: str) -> bool:
    """True when `subject` is an inbox this system may answer into (the rule above)."""
    return len(subject) <= MAX_REPLY_SUBJECT and subject.isascii() and _REPLY_SUBJECT.fullmatch(subject) is not None


class ReplyGuard:
    """One service's check of the reply subjects it answers, with its counts; the event loop's only."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.dropped_reply_subject = 0
        self.dropped_without_reply = 0
        self._warned_at = -WARN_EVERY_S
        self._unlogged = 0

    @property
    def errors(self) -> dict[str, int]:
        """The counts under the names the service's metrics and health show."""
        return {
            "dropped_reply_subject": self.dropped_reply_subject,
            "dropped_without_reply": self.dropped_without_reply,
        }

    def admits(self, msg: Msg) -> bool:
        """True when `msg` may be answered; counts (and now and then logs) what may not."""
        reply = msg.reply
        if not reply:
            self.dropped_without_reply += 1
            return False
        if is_reply_subject(reply):
            return True
        self.dropped_reply_subject += 1
        self._unlogged += 1
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:
            logger.warning(
                "request dropped: reply subject outside the inboxes",
                extra={
                    "service": self.service,
                    "subject": msg.subject[:LOGGED_SUBJECT_CHARS],
                    "reply": reply[:LOGGED_SUBJECT_CHARS],
                    "dropped_since_last_warning": self._unlogged,
                },
            )
            self._warned_at = now
            self._unlogged = 0
        return False

    def guarded(self, handler: MsgHandler) -> MsgHandler:
        """`handler`, called only for messages whose reply subject may be answered."""

        async def answer_inboxes_only(msg: Msg) -> None:
            if self.admits(msg):
                await handler(msg)

        return answer_inboxes_only


class GuardedService:
    """A nats micro service (`$SRV.PING|INFO|STATS` and endpoints) that answers inboxes only."""

    def __init__(self, service: Service, client: MicroClient) -> None:
        self.service = service
        self._client = client

    @classmethod
    async def start(cls, nc: Client, guard: ReplyGuard, **config: Any) -> GuardedService:
        """`nats.micro.add_service(nc, **config)`, its verbs subscribed through the guard (checked).

        Returns once the server holds the subscriptions (a flush): a request sent by anyone after
        the service started finds it, never a "no responders" status.
        """
        client = MicroClient(nc, guard.guarded)
        service = await add_service(cast(Client, client), **config)
        guarded = cls(service, client)
        guarded._expect(MICRO_VERB_SUBSCRIPTIONS, "its $SRV verbs")
        await nc.flush()
        return guarded

    async def add_endpoint(self, *, admit: Callable[[Msg], bool] | None = None, **config: Any) -> None:
        """`Service.add_endpoint(**config)`, its subscription made through the guard (checked).

        With `admit`, a request it refuses is dropped before micro sees it: neither answered nor
        counted in `$SRV.STATS` (a wildcard endpoint's request that another worker answers).
        """
        expected = self._client.subscriptions + 1
        self._client.admit = admit
        try:
            await self.service.add_endpoint(**config)
        finally:
            self._client.admit = None
        self._expect(expected, f"endpoint {config.get('name')}")

    async def stop(self) -> None:
        await self.service.stop()

    def _expect(self, subscriptions: int, what: str) -> None:
        if self._client.subscriptions != subscriptions:
            raise RuntimeError(
                f"nats micro subscribed {what} around the reply guard ({self._client.subscriptions} guarded "
                f"subscriptions, {subscriptions} expected): review tradetape.bus.replies for this nats-py"
            )
