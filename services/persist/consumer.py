"""Persist's durable consumer: bound at start, re-provisioned when it or the stream disappears.

A consumer deleted by an operator, or a NATS server that comes back without its
JetStream state, would otherwise leave persist fetching from nothing forever. Whenever a
fetch fails, or the consumer has been quiet for a while, `ensure()` asks the server for
the consumer and, if it is gone, provisions the streams and the consumer again and binds
anew (the store merges by agg id, so messages delivered again are not stored twice).

Messages the server gives up on after `max_deliver` deliveries are announced on a
JetStream advisory; `MaxDeliveries` reads each such message back from the stream and
dead-letters it, so nothing is retried forever and nothing is dropped silently.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from tradetape.bus.deadletter import publish_deadletter
from tradetape.bus.provision import (
    PERSIST_MAX_DELIVER,
    ensure_persist_consumer,
    ensure_streams,
    listed_catch_up_config,
    persist_durable,
)
from tradetape.bus.subjects import TRADES_STREAM, max_deliveries_subject, trade_instrument
from tradetape.domain.symbols import SymbolError
from tradetape.settings import Settings

logger = logging.getLogger(__name__)

HEALTH_CHECK_IDLE_S = 5.0
"""After this long without a message, check that the consumer still exists."""
PULL_PENDING_BYTES = 0
"""No client-side byte limit: a fetch asks for at most a batch, and a message over a limit would be dropped."""


class PersistConsumer:
    """The bound pull subscription of one persist shard, kept alive across deletions."""

    def __init__(self, settings: Settings, js: JetStreamContext) -> None:
        self._settings = settings
        self._js = js
        self.durable = persist_durable(settings.shard)
        self.symbols: tuple[str, ...] | None = None
        """The shard's symbols its filter is built from, once resolved (None: `settings.shard_symbols`)."""
        self._subscription: JetStreamContext.PullSubscription | None = None
        self._last_seen = time.monotonic()
        self.reprovisioned = 0
        self.catch_ups: list[tuple[str, JetStreamContext.PullSubscription]] = []
        """Consumers of listed symbols' messages from before the filter grew (`grow`), oldest first."""
        self._listings = 0

    async def bind(self) -> JetStreamContext.PullSubscription:
        await ensure_streams(self._js, self._settings)
        await ensure_persist_consumer(self._js, self._settings, self.symbols)
        subscription, self._subscription = self._subscription, None
        await _unsubscribe(subscription)
        self._subscription = await self._js.pull_subscribe_bind(
            self.durable, TRADES_STREAM, pending_bytes_limit=PULL_PENDING_BYTES
        )
        self._last_seen = time.monotonic()
        return self._subscription

    @property
    def subscription(self) -> JetStreamContext.PullSubscription:
        if self._subscription is None:
            raise RuntimeError("the persist consumer is not bound")
        return self._subscription

    def saw_messages(self) -> None:
        self._last_seen = time.monotonic()

    def idle(self) -> bool:
        return time.monotonic() - self._last_seen >= HEALTH_CHECK_IDLE_S

    async def ensure(self) -> bool:
        """Re-provision and re-bind if the consumer or its stream is gone; True if it had to."""
        self._last_seen = time.monotonic()
        try:
            await self._js.consumer_info(TRADES_STREAM, self.durable)
            return False
        except NotFoundError:
            logger.warning("consumer missing, provisioning again", extra={"consumer": self.durable})
        await self.bind()
        self.reprovisioned += 1
        logger.info("consumer provisioned again", extra={"consumer": self.durable})
        return True

    async def grow(self, added: tuple[str, ...]) -> None:
        """Take the subjects of `added` (symbols listed while persist runs) too, from their first message.

        The durable consumer's filter grows (it goes on from where it is); a catch-up consumer
        (`listed_catch_up_config`) brings the messages of `added` the stream holds from before,
        until `caught_up` says it has nothing left.
        """
        self.symbols = tuple(dict.fromkeys((*(self.symbols or ()), *added)))
        await ensure_persist_consumer(self._js, self._settings, self.symbols)
        self._listings += 1
        config = listed_catch_up_config(self._settings, added, self._listings)
        assert config.name is not None
        await self._js.add_consumer(TRADES_STREAM, config)
        subscription = await self._js.pull_subscribe_bind(
            config.name, TRADES_STREAM, pending_bytes_limit=PULL_PENDING_BYTES
        )
        self.catch_ups.append((config.name, subscription))

    async def caught_up(self) -> None:
        """Drop the oldest catch-up consumer if nothing of it is left to deliver or to ack."""
        name, subscription = self.catch_ups[0]
        try:
            info = await self._js.consumer_info(TRADES_STREAM, name)
        except NotFoundError:
            info = None
        if info is None or (not info.num_pending and not info.num_ack_pending):
            self.catch_ups.pop(0)
            await _unsubscribe(subscription)
            logger.info("listed symbols caught up", extra={"consumer": name})

    async def close(self) -> None:
        """Unsubscribe the durable consumer and every catch-up consumer."""
        subscription, self._subscription = self._subscription, None
        await _unsubscribe(subscription)
        while self.catch_ups:
            await _unsubscribe(self.catch_ups.pop()[1])


class MaxDeliveries:
    """Dead-letters every message the server stopped delivering after `max_deliver` attempts."""

    def __init__(self, nc: Client, js: JetStreamContext, durable: str, deadlettered: Counter[str]) -> None:
        self._nc = nc
        self._js = js
        self._durable = durable
        self._deadlettered = deadlettered
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        self._subscription = await self._nc.subscribe(max_deliveries_subject(self._durable), cb=self._on_advisory)

    async def _on_advisory(self, advisory: Msg) -> None:
        try:
            event = orjson.loads(advisory.data)
            sequence = int(event["stream_seq"])
            deliveries = int(event.get("deliveries", PERSIST_MAX_DELIVER))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            text = advisory.data[:200].decode(errors="replace")
            logger.warning("unreadable max-deliveries advisory", extra={"data": text})
            return
        try:
            stored = await self._js.get_msg(TRADES_STREAM, sequence)
        except NotFoundError:
            logger.warning("undeliverable message already gone from the stream", extra={"sequence": sequence})
            return
        try:
            symbol: str | None = trade_instrument(stored.subject or "")
        except SymbolError:
            symbol = None
        reason = f"not acknowledged after {deliveries} deliveries (stream sequence {sequence})"
        await publish_deadletter(
            self._js, "persist", symbol, stored.data or b"", reason, max_payload=self._nc.max_payload
        )
        self._deadlettered[symbol or "unknown"] += 1

    async def stop(self) -> None:
        subscription, self._subscription = self._subscription, None
        await _unsubscribe(subscription)


async def _unsubscribe(subscription: Subscription | JetStreamContext.PullSubscription | None) -> None:
    """Unsubscribe if subscribed; a connection already gone has nothing left to unsubscribe."""
    if subscription is not None:
        try:
            await subscription.unsubscribe()
        except NatsError as exc:
            logger.debug("unsubscribe failed", extra={"error": repr(exc)})
