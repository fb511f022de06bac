"""NATS names: the trades stream, its per-instrument subjects, dead letters, query, live, import and micro subjects.

Every subject tradetape publishes or subscribes to is spelled here.

A subject names an instrument (`tradetape.domain.instruments`) by its token, as its last
token or two: spot keeps the bare symbol (`tape.trades.binance.BTCUSDT`), a futures
market is a token of its own before the symbol (`tape.trades.binance.um.BTCUSDT`,
`tape.query.bars.cm.BTCUSD_PERP`). So a filter `<family>.*` is spot only, `<family>.um.*`
is USD-M only and `<family>.>` is every market. A subject built from a name checks it:
whatever a caller passes, no subject leaves here with a wildcard, an extra token or a
length that would make nats-server close the connection (its control line holds 4 KiB).
A subject read back (`trade_instrument`, `query_instrument`) yields the canonical name
or `SymbolError`, never a guess from its last token.
"""

from __future__ import annotations

from tradetape.domain.instruments import instrument_of_token, instrument_token, is_instrument
from tradetape.domain.symbols import SymbolError, quoted_name

TRADES_STREAM = "TAPE_TRADES"
TRADES_PREFIX = "tape.trades.binance"
TRADES_SUBJECTS = f"{TRADES_PREFIX}.>"

DEADLETTER_STREAM = "TAPE_DEADLETTER"
DEADLETTER_PREFIX = "tape.deadletter"
REASON_HEADER = "Tradetape-Reason"
ORIGINAL_SIZE_HEADER = "Tradetape-Original-Size"
TRUNCATED_HEADER = "Tradetape-Truncated"
MSG_ID_HEADER = "Nats-Msg-Id"
VIEW_HEADER = "Tradetape-View"
"""On a query reply: the analytics worker and the state of the store it read (`<worker>.<generation>`), when the
answer read one state; two replies with the same view read the same trades (how a live join checks its snapshot)."""

QUERY_PREFIX = "tape.query"
QUERY_SUBJECT = f"{QUERY_PREFIX}.<method>.<SYMBOL>"
SYMBOL_TOKENS = (
    "<SYMBOL> is the instrument's token: the bare symbol on spot (BTCUSDT), the market then the symbol on futures "
    "(um.BTCUSDT for the instrument um:BTCUSDT, cm.BTCUSD_PERP for cm:BTCUSD_PERP)"
)
"""How a subject spells an instrument, for the schema (`tradetape schema`) and the docs."""
LIVE_PREFIX = "tape.live"
PROFILE_SUBJECT = f"{LIVE_PREFIX}.profile.<SYMBOL>"
BARS_SUBJECT = f"{LIVE_PREFIX}.bars.1s.<SYMBOL>"
LIVE_TRADES_SUBJECT = f"{LIVE_PREFIX}.trades.<SYMBOL>"
IMPORT_PREFIX = "tape.persist.import"
WRITTEN_PREFIX = "tape.persist.written"
"""Core NATS: persist's notice after each durable write of a shard, so its analytics workers catch up at once."""
INGEST_STATS_SUBJECT = "tape.ingest.stats"
"""Request-reply: ingest answers with its per-symbol counters and open gaps (JSON)."""

REPLAY_PREFIX = "tape.replay"
REPLAY_OPEN_PREFIX = f"{REPLAY_PREFIX}.open"
REPLAY_OPEN_SUBJECTS = f"{REPLAY_OPEN_PREFIX}.>"
"""Request-reply streamed: `tape.replay.open.<instrument token>` asks for a replay (`tradetape.api.replay`)."""
REPLAY_FLOW_PREFIX = f"{REPLAY_PREFIX}.flow"

EXCHANGE = "binance"


def trade_subject(instrument: str) -> str:
    return f"{TRADES_PREFIX}.{instrument_token(instrument)}"


def trade_instrument(subject: str) -> str:
    """The instrument a trade subject names; `SymbolError` for a subject that is not one instrument's trades."""
    return _instrument_after(subject, f"{TRADES_PREFIX}.")


def query_instrument(subject: str) -> str:
    """The instrument a query subject `tape.query.<method>.<INSTRUMENT>` names; `SymbolError` otherwise."""
    parts = subject.split(".", 3)
    if len(parts) < 4 or f"{parts[0]}.{parts[1]}" != QUERY_PREFIX:
        raise SymbolError(f"subject {quoted_name(subject)} is not a query subject")
    return instrument_of_token(parts[3])


def _instrument_after(subject: str, prefix: str) -> str:
    if not subject.startswith(prefix):
        raise SymbolError(f"subject {quoted_name(subject)} is not under {prefix}")
    return instrument_of_token(subject[len(prefix) :])


def trade_msg_id(instrument: str, agg_id: int) -> str:
    """JetStream drops a second publish with the same id inside the duplicate window.

    Keyed on the instrument's name: `binance:BTCUSDT:7` (spot, as ever) and
    `binance:um:BTCUSDT:7` never collide, so a futures trade is not dropped as the
    duplicate of the spot trade with the same agg id.
    """
    return f"{EXCHANGE}:{instrument}:{agg_id}"


def deadletter_subject(source: str, instrument: str | None = None) -> str:
    """`tape.deadletter.<source>.<INSTRUMENT>`; `unknown` for no instrument or a name that is none (never raises)."""
    token = instrument_token(instrument) if instrument is not None and is_instrument(instrument) else "unknown"
    return f"{DEADLETTER_PREFIX}.{source}.{token}"


def method_queries(method: str) -> str:
    """Every query subject of `method`, whatever instrument it names: one wildcard endpoint a method."""
    return f"{QUERY_PREFIX}.{method}.>"


def queried_symbol(method: str, subject: str) -> str:
    """The instrument a query subject of `method` names (`query_instrument`), checked by spelling it back.

    A subject the wildcard endpoint received may carry anything after the method; only one
    that `query_subject` would have written for the name read from it is a query of that name
    (`SymbolError` otherwise), so an extra token never passes for another instrument.
    """
    instrument = query_instrument(subject)
    if query_subject(method, instrument) != subject:
        raise SymbolError(f"subject {quoted_name(subject)} is not a query of {method} about one instrument")
    return instrument


def query_subject(method: str, instrument: str) -> str:
    return f"{QUERY_PREFIX}.{method}.{instrument_token(instrument)}"


def profile_subject(instrument: str) -> str:
    return f"{LIVE_PREFIX}.profile.{instrument_token(instrument)}"


def bars_subject(instrument: str) -> str:
    return f"{LIVE_PREFIX}.bars.1s.{instrument_token(instrument)}"


def live_trades_subject(instrument: str) -> str:
    """Each write's newly stored trades of `instrument` (`tradetape.api.live.messages.LiveTradesUpdate`)."""
    return f"{LIVE_PREFIX}.trades.{instrument_token(instrument)}"


def written_subject(shard: str) -> str:
    """Persist's notice that a write of `shard` (a settings-checked name: letters, digits, `_`, `-`) is durable."""
    return f"{WRITTEN_PREFIX}.{shard}"


def import_subject(instrument: str) -> str:
    return f"{IMPORT_PREFIX}.{instrument_token(instrument)}"


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
    return _instrument_after(subject, f"{REPLAY_OPEN_PREFIX}.")


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
