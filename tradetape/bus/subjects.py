"""NATS names: the trades stream, its per-symbol subjects, dead letters, query, live, import and micro subjects.

Every subject tradetape publishes or subscribes to is spelled here.

A subject built from a symbol checks it (`tradetape.domain.symbols`): whatever a caller
passes, no subject leaves here with a wildcard, an extra token or a length that would make
nats-server close the connection (its control line holds 4 KiB).
"""

from __future__ import annotations

from tradetape.domain.instruments import instrument_of_token, instrument_token
from tradetape.domain.symbols import check_symbol

TRADES_STREAM = "TAPE_TRADES"
TRADES_PREFIX = "tape.trades.binance"
TRADES_SUBJECTS = f"{TRADES_PREFIX}.>"

DEADLETTER_STREAM = "TAPE_DEADLETTER"
DEADLETTER_PREFIX = "tape.deadletter"
REASON_HEADER = "Tradetape-Reason"
ORIGINAL_SIZE_HEADER = "Tradetape-Original-Size"
TRUNCATED_HEADER = "Tradetape-Truncated"
MSG_ID_HEADER = "Nats-Msg-Id"

QUERY_PREFIX = "tape.query"
QUERY_SUBJECT = f"{QUERY_PREFIX}.<method>.<SYMBOL>"
LIVE_PREFIX = "tape.live"
PROFILE_SUBJECT = f"{LIVE_PREFIX}.profile.<SYMBOL>"
BARS_SUBJECT = f"{LIVE_PREFIX}.bars.1s.<SYMBOL>"
IMPORT_PREFIX = "tape.persist.import"
INGEST_STATS_SUBJECT = "tape.ingest.stats"
"""Request-reply: ingest answers with its per-symbol counters and open gaps (JSON)."""

REPLAY_PREFIX = "tape.replay"
REPLAY_OPEN_PREFIX = f"{REPLAY_PREFIX}.open"
REPLAY_OPEN_SUBJECTS = f"{REPLAY_OPEN_PREFIX}.>"
"""Request-reply streamed: `tape.replay.open.<instrument token>` asks for a replay (`tradetape.api.replay`)."""
REPLAY_FLOW_PREFIX = f"{REPLAY_PREFIX}.flow"

EXCHANGE = "binance"


def trade_subject(symbol: str) -> str:
    return f"{TRADES_PREFIX}.{check_symbol(symbol)}"


def symbol_of(subject: str) -> str:
    """The symbol is always the last token of a trade or query subject."""
    return subject.rsplit(".", 1)[-1]


def trade_msg_id(symbol: str, agg_id: int) -> str:
    """JetStream drops a second publish with the same id inside the duplicate window."""
    return f"{EXCHANGE}:{symbol}:{agg_id}"


def deadletter_subject(source: str, symbol: str | None = None) -> str:
    return f"{DEADLETTER_PREFIX}.{source}.{symbol or 'unknown'}"


def query_subject(method: str, symbol: str) -> str:
    return f"{QUERY_PREFIX}.{method}.{check_symbol(symbol)}"


def profile_subject(symbol: str) -> str:
    return f"{LIVE_PREFIX}.profile.{check_symbol(symbol)}"


def bars_subject(symbol: str) -> str:
    return f"{LIVE_PREFIX}.bars.1s.{check_symbol(symbol)}"


def import_subject(symbol: str) -> str:
    return f"{IMPORT_PREFIX}.{check_symbol(symbol)}"


def max_deliveries_subject(durable: str) -> str:
    """JetStream's advisory when a message of the trades stream ran out of deliveries to `durable`."""
    return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{TRADES_STREAM}.{durable}"


def micro_subject(verb: str, service: str | None = None) -> str:
    """nats micro's discovery subject `$SRV.<verb>[.<service>]` (PING, INFO, STATS)."""
    return f"$SRV.{verb}" + (f".{service}" if service else "")


ANALYTICS_SERVICE = "tradetape-analytics"
"""The micro service name: `$SRV.INFO.tradetape-analytics` lists every worker and its endpoints."""

SCHEMA_SUBJECT = "tape.schema"
"""Request-reply: the JSON Schema of every query method (what `tradetape schema` prints).

One endpoint, not a copy in each endpoint's metadata: with hundreds of symbols the copies
would push `$SRV.INFO` past the server's max payload."""


def analytics_queue_group(shard: str) -> str:
    """Replicas of one shard's workers share this queue group."""
    return f"{ANALYTICS_SERVICE}-{shard}"


def replay_subject(instrument: str) -> str:
    """Where a replay of `instrument` (a canonical name: `BTCUSDT`, `um:BTCUSDT`) is asked for."""
    return f"{REPLAY_OPEN_PREFIX}.{instrument_token(instrument)}"


def replayed_instrument(subject: str) -> str:
    """The instrument a replay request's subject names; `SymbolError` for anything else."""
    prefix = REPLAY_OPEN_PREFIX + "."
    return instrument_of_token(subject[len(prefix) :] if subject.startswith(prefix) else "")


def replay_flow_subject(stream_id: str) -> str:
    """Where a replay's client sends its acks and cancel: one subject a stream, named by the worker."""
    if not stream_id.isalnum() or not stream_id.isascii():
        raise ValueError(f"a replay stream id is ASCII letters and digits: {stream_id!r}")
    return f"{REPLAY_FLOW_PREFIX}.{stream_id}"


MAX_PUBLISH_SUBJECT = 256
_OWN_PREFIXES = ("tape.", "$", "_INBOX")


def check_foreign_subject(subject: str) -> str:
    """`subject` if a user may have tradetape publish to it: one concrete subject outside tradetape's own
    (`tape.>`), the system's (`$...`) and the inboxes; `ValueError` saying why not otherwise."""
    tokens = subject.split(".")
    if not subject.isascii() or len(subject) > MAX_PUBLISH_SUBJECT or any(c.isspace() for c in subject):
        raise ValueError(f"a subject is printable ASCII of at most {MAX_PUBLISH_SUBJECT} characters: {subject[:80]!r}")
    if any(token in ("", "*", ">") for token in tokens):
        raise ValueError(f"a subject to publish to has no empty token and no wildcard: {subject!r}")
    if subject.startswith(_OWN_PREFIXES):
        raise ValueError(f"subject {subject!r} is tradetape's or the server's: choose one outside tape.>, $, _INBOX")
    return subject
