"""tradetape's NATS roles, written once: what each user may publish and subscribe to.

Two servers take these lists. Compose's nats-server includes `deploy/nats/auth.conf`, a file
mounted from the repository that nats-server reads itself; `tradetape up`'s embedded server is
configured from Python (`tradetape.runtime.nats_users`) and runs where only the wheel is,
which ships no `deploy/`. So the table lives here and the file is rendered from it
(`tradetape nats-auth > deploy/nats/auth.conf`; tests/bus/test_roles.py fails while the
committed file differs): compose keeps a plain file and needs no tradetape to read it, and `up`
needs no parser of nats-server's config syntax. Every role is here, though `up` uses only
`query` (its other user has all rights, like `admin`): the roles are one table, whoever reads them.

Subjects are built from the names the code uses (`tradetape.bus.subjects`, the KV buckets, the
inbox prefixes), so renaming a subject renames its permission. The lines of each list are kept
as the file shows them, so a role's diff is the lines that changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tradetape.bus.ledger import LEDGER_BUCKET
from tradetape.bus.served import SERVED_BUCKET
from tradetape.bus.shard_stores import SHARD_STORES_BUCKET
from tradetape.bus.subjects import (
    ANALYTICS_SERVICE,
    DEADLETTER_PREFIX,
    DEADLETTER_STREAM,
    IMPORT_PREFIX,
    INGEST_STATS_SUBJECT,
    LIVE_PREFIX,
    QUERY_PREFIX,
    REPLAY_PREFIX,
    SCHEMA_SUBJECT,
    TRADES_STREAM,
    TRADES_SUBJECTS,
    WRITTEN_PREFIX,
    max_deliveries_subject,
    micro_subject,
)
from tradetape.ground.inboxes import DEFAULT_INBOX_PREFIX, ROLE_INBOX_PREFIXES

Lines = tuple[tuple[str, ...], ...]
"""A list of subjects as the file shows it: one tuple a line."""


@dataclass(frozen=True)
class Role:
    """One NATS user and its role: the user `name`, the role block `NAME`, the password `$TRADETAPE_NAME_PASSWORD`."""

    name: str
    about: str
    """The comment above the role's block: who uses it, for what."""
    publish: Lines
    subscribe: Lines

    def permissions(self) -> dict[str, Any]:
        """The role as nats-server's `permissions` block (what `up` gives its users)."""
        return {
            action: {"allow": [subject for line in lines for subject in line]}
            for action, lines in (("publish", self.publish), ("subscribe", self.subscribe))
        }


def _js_api(*tokens: str) -> str:
    return ".".join(("$JS.API", *tokens))


def _stream(*tokens: str) -> str:
    return _js_api("STREAM", *tokens)


def _consumer(*tokens: str) -> str:
    return _js_api("CONSUMER", *tokens)


def _kv_stream(bucket: str) -> str:
    return f"KV_{bucket}"


def _inbox(role: str) -> str:
    return f"{ROLE_INBOX_PREFIXES[role]}.>"


def _micro_responder(service: str) -> tuple[str, ...]:
    """The `$SRV` verbs a micro service answers: to everyone, and to its own name."""
    verbs = tuple(micro_subject(verb) for verb in ("PING", "INFO", "STATS"))
    return (*verbs, micro_subject("*", service), f"{micro_subject('*', service)}.*")


_ANY_INBOX = f"{DEFAULT_INBOX_PREFIX}.>"
_LEDGER = _kv_stream(LEDGER_BUCKET)
_SHARD_STORES = _kv_stream(SHARD_STORES_BUCKET)
_SERVED = _kv_stream(SERVED_BUCKET)
_STREAMS_KEPT: Lines = (
    (_stream("CREATE", TRADES_STREAM), _stream("UPDATE", TRADES_STREAM),
     _stream("INFO", TRADES_STREAM)),
    (_stream("CREATE", DEADLETTER_STREAM), _stream("UPDATE", DEADLETTER_STREAM)),
    (_stream("INFO", DEADLETTER_STREAM),),
    (_stream("MSG", "GET", TRADES_STREAM),),
)
"""Provisioning the trades and dead-letter streams, and reading a stored trade back (ingest and persist)."""
_LEDGER_READ = (_stream("MSG", "GET", _LEDGER), _js_api("DIRECT", "GET", _LEDGER, ">"))

ROLES: tuple[Role, ...] = (
    Role(
        name="ingest",
        about="ingest: publishes trades and its dead letters, keeps its gap ledger (KV), provisions the\n"
        "streams, reads the last stored trade of a symbol; answers tape.ingest.stats (monitor) and\n"
        "the $SRV verbs of tradetape-ingest (monitor).",
        publish=(
            (TRADES_SUBJECTS,),
            (f"{DEADLETTER_PREFIX}.ingest.>",),
            *_STREAMS_KEPT,
            (_stream("CREATE", _LEDGER), _stream("INFO", _LEDGER)),
            _LEDGER_READ,
            (f"$KV.{LEDGER_BUCKET}.>",),
            (_inbox("monitor"), _ANY_INBOX),
        ),
        subscribe=((_inbox("ingest"), INGEST_STATS_SUBJECT), _micro_responder("tradetape-ingest")),
    ),
    Role(
        name="persist",
        about="persist: provisions the streams and its own durable pull consumer, fetches, acks,\n"
        "dead-letters what it cannot store (reading a given-up message back by sequence),\n"
        "publishes live updates of what it stored; answers bulk-import batches (importer) and the\n"
        "$SRV verbs of tradetape-persist (monitor); reads ingest's ledger (an id far beyond the\n"
        "newest must be one ingest knows); records its store in TAPE_SHARD_STORES; announces each\n"
        "durable write to its shard's analytics workers (tape.persist.written).",
        publish=(
            *_STREAMS_KEPT,
            (_consumer("CREATE", TRADES_STREAM, ">"), _consumer("DURABLE", "CREATE", TRADES_STREAM, "*")),
            (_consumer("INFO", TRADES_STREAM, "*"), _consumer("MSG", "NEXT", TRADES_STREAM, "*")),
            (f"$JS.ACK.{TRADES_STREAM}.>",),
            (f"{DEADLETTER_PREFIX}.persist.>",),
            (f"{LIVE_PREFIX}.>",),
            (f"{WRITTEN_PREFIX}.*",),
            (_stream("INFO", _LEDGER),),
            _LEDGER_READ,
            (_stream("CREATE", _SHARD_STORES), _stream("INFO", _SHARD_STORES)),
            (_stream("MSG", "GET", _SHARD_STORES), _js_api("DIRECT", "GET", _SHARD_STORES, ">")),
            (f"$KV.{SHARD_STORES_BUCKET}.>",),
            (_inbox("importer"), _inbox("monitor"), _ANY_INBOX),
        ),
        subscribe=(
            (_inbox("persist"), max_deliveries_subject("*"), f"{IMPORT_PREFIX}.*"),
            _micro_responder("tradetape-persist"),
        ),
    ),
    Role(
        name="analytics",
        about="analytics: a micro service answering queries (query, monitor) and its $SRV verbs (query asks\n"
        "$SRV.INFO.tradetape-analytics, monitor all of them); reads ingest's ledger for coverage and,\n"
        "at start, which store its shard's persist writes; publishes what its shard serves (TAPE_SERVED);\n"
        "streams replays (tape.replay.open.*) to the asker's inbox and hears its acks on the stream's own\n"
        "tape.replay.flow subject; hears of each write of its shard (tape.persist.written) to catch up at once.",
        publish=(
            (_stream("INFO", _LEDGER),),
            _LEDGER_READ,
            (_stream("INFO", _SHARD_STORES),),
            (_stream("MSG", "GET", _SHARD_STORES), _js_api("DIRECT", "GET", _SHARD_STORES, ">")),
            (_stream("CREATE", _SERVED), _stream("INFO", _SERVED), f"$KV.{SERVED_BUCKET}.>"),
            (_inbox("query"), _inbox("monitor"), _ANY_INBOX),
        ),
        subscribe=(
            (_inbox("analytics"), f"{QUERY_PREFIX}.>", SCHEMA_SUBJECT),
            (f"{WRITTEN_PREFIX}.*",),
            _micro_responder(ANALYTICS_SERVICE),
            (f"{REPLAY_PREFIX}.>",),
        ),
    ),
    Role(
        name="query",
        about="query: clients (the CLI, the Python client, MCP, the web page) only ask, list what analytics\n"
        "serves (the TAPE_SERVED bucket's keys and values, read-only), follow live updates and replay stored\n"
        "ranges (asking, then acking on the stream's flow subject). Every browser gets this role (and, under\n"
        "compose, so does a WebSocket client without credentials): its clients share one inbox prefix, so a\n"
        "query reply never carries anything but market data.",
        publish=(
            (f"{QUERY_PREFIX}.>", SCHEMA_SUBJECT, micro_subject("INFO", ANALYTICS_SERVICE)),
            (_stream("INFO", _SERVED), _js_api("DIRECT", "GET", _SERVED, ">")),
            (f"{REPLAY_PREFIX}.>",),
        ),
        subscribe=((_inbox("query"), f"{LIVE_PREFIX}.>"),),
    ),
    Role(
        name="importer",
        about="importer: `tradetape import` (and backfill, repair) sends history batches to the persist\n"
        "shard of a symbol.",
        publish=((f"{IMPORT_PREFIX}.*",),),
        subscribe=((_inbox("importer"),),),
    ),
    Role(
        name="monitor",
        about="monitor: `tradetape status`, dashboards, `nats micro`: coverage queries, every $SRV verb,\n"
        "ingest's counters and read-only JetStream state.",
        publish=(
            (f"{QUERY_PREFIX}.>", micro_subject(">"), INGEST_STATS_SUBJECT),
            (_js_api("INFO"), _stream("NAMES"), _stream("LIST"), _stream("INFO", "*")),
            (_consumer("NAMES", "*"), _consumer("LIST", "*"), _consumer("INFO", "*", "*")),
            _LEDGER_READ,
            (_js_api("DIRECT", "GET", _SERVED, ">"),),
        ),
        subscribe=((_inbox("monitor"),),),
    ),
)
"""Every role but admin's, in the file's order; admin may do everything and has no block."""


def role(name: str) -> Role:
    """The role of user `name`; `KeyError` if there is none."""
    for found in ROLES:
        if found.name == name:
            return found
    raise KeyError(f"no NATS role {name!r}")

ADMIN_USER = "admin"

_HEADER = """\
# tradetape's NATS users: one a role, each allowed only the subjects its role uses.
#
# Generated from tradetape/bus/roles.py by `tradetape nats-auth > deploy/nats/auth.conf`: change
# the table there, not this file (tests/bus/test_roles.py fails while the two differ).
#
# Passwords come from the environment of nats-server (a `$NAME` not defined in this file is
# read from there): TRADETAPE_INGEST_PASSWORD, TRADETAPE_PERSIST_PASSWORD,
# TRADETAPE_ANALYTICS_PASSWORD, TRADETAPE_QUERY_PASSWORD, TRADETAPE_IMPORTER_PASSWORD,
# TRADETAPE_MONITOR_PASSWORD, TRADETAPE_ADMIN_PASSWORD (`deploy/make-env` writes random ones into `.env`).
# Any user can be switched to an nkey (`{nkey: U..., permissions: $INGEST}`) or, in operator
# mode, the same lists go into the user JWTs (`nsc add user --allow-pub ... --allow-sub ...`).
#
# Inboxes: each role's clients make their inboxes under the role's own prefix (the service
# setting TRADETAPE_NATS_INBOX_PREFIX; the nats CLI's --inbox-prefix) and may subscribe to that
# prefix only, so no role reads another's replies (admin keeps `_INBOX`).
#
# Replies: no role has `allow_responses`. nats-server lets a client publish to any reply subject
# it was delivered, checked after (and despite) its allow and deny lists, so a requester could
# aim a responder's answer at trades, the ledger or live subjects. Responders instead may
# publish to the inbox prefixes of the roles that ask them, nothing else, and refuse any other
# reply subject themselves (tradetape/bus/replies.py).
# A `*` in a subscribe allow also lets a client subscribe with `>` at that token (the server
# matches the subscription's subject as a literal), so verbs are listed, never `$SRV.*`.
# tests/operate/test_permissions.py runs every service under its own user with exactly this
# file, and every forbidden action of every role against it.
"""


def _password(user: str) -> str:
    return f"$TRADETAPE_{user.upper()}_PASSWORD"


def _allow(action: str, lines: Lines) -> list[str]:
    """One action's block: inline when the list is one line, else one line of the file a line of the table."""
    if len(lines) == 1:
        return [f"    {action} = {{ allow = [{_subjects(lines[0])}] }}"]
    body = ",\n".join(f"        {_subjects(line)}" for line in lines)
    return [f"    {action} = {{", "      allow = [", body, "      ]", "    }"]


def _subjects(line: tuple[str, ...]) -> str:
    return ", ".join(json.dumps(subject) for subject in line)


def auth_conf() -> str:
    """deploy/nats/auth.conf: the `authorization` block of every role and user, for nats-server to include."""
    out = [_HEADER, "authorization {"]
    for role in ROLES:
        out += [f"  # {line}" for line in role.about.splitlines()]
        out += [f"  {role.name.upper()} = {{", *_allow("publish", role.publish), *_allow("subscribe", role.subscribe)]
        out += ["  }", ""]
    out.append("  users = [")
    out += [
        f"    {{ user: {role.name}, password: {_password(role.name)}, permissions: ${role.name.upper()} }}"
        for role in ROLES
    ]
    out += [
        "    # admin: everything (stream management with the nats CLI); keep its password offline.",
        f"    {{ user: {ADMIN_USER}, password: {_password(ADMIN_USER)} }}",
        "  ]",
        "}",
    ]
    return "\n".join(out) + "\n"
