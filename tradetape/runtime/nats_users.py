"""The users of `tradetape up`'s embedded nats-server: no client is let in without a password.

Two users, no anonymous access on either listener:

- `tradetape`, all rights, for the services `up` starts and the local commands; only over
  plain TCP (`allowed_connection_types`), so no WebSocket client is ever it, even with its
  password. A new password each run, handed to the children in `NATS_URL` and to the local
  commands in `<data dir>/nats.url` (0600).
- `query`, the `query` role (ask `tape.query.>`, read what analytics serves from the `TAPE_SERVED` bucket, follow
  `tape.live.>`, nothing else), for
  the web page: its password is random per data directory and kept 0600 in
  `<data dir>/nats-ws.user.json`, which `tradetape web` hands to the page in `config.json`.

The role comes from the one table of roles, `tradetape.bus.roles`, which `deploy/nats/auth.conf`
(compose's nats-server) is rendered from: the wheel ships no `deploy/`, and a file read back
here would need a parser of nats-server's config syntax.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import orjson
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from tradetape.bus.roles import role
from tradetape.ground.private_files import write_private_file

logger = logging.getLogger(__name__)

INTERNAL_USER = "tradetape"
QUERY_USER = "query"
_CREDENTIAL_MAX_BYTES = 4096


class Credential(BaseModel):
    """A NATS user and its password."""

    model_config = ConfigDict(frozen=True)

    user: str
    password: SecretStr

    @classmethod
    def generate(cls, user: str) -> Credential:
        return cls(user=user, password=SecretStr(secrets.token_urlsafe(32)))


class EmbeddedUsers(BaseModel):
    """The embedded server's two users; `authorization()` is their nats-server config block."""

    model_config = ConfigDict(frozen=True)

    internal: Credential
    query: Credential

    def authorization(self) -> dict[str, Any]:
        """The `authorization` block: these users only, so every client of every listener authenticates."""
        return {
            "users": [
                {
                    "user": self.internal.user,
                    "password": self.internal.password.get_secret_value(),
                    "allowed_connection_types": ["STANDARD"],
                },
                {
                    "user": self.query.user,
                    "password": self.query.password.get_secret_value(),
                    "permissions": role(QUERY_USER).permissions(),
                },
            ]
        }


def with_credential(url: str, credential: Credential) -> str:
    """`url` with `credential` as its user info (percent-encoded), as nats-py and `NATS_URL` take it."""
    parts = urlsplit(url)
    userinfo = f"{quote(credential.user, safe='')}:{quote(credential.password.get_secret_value(), safe='')}"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))


def read_credential(path: Path) -> Credential | None:
    """The credential kept in `path`; None if there is none, or the file is not one or not only its owner's."""
    try:
        with path.open("rb") as handle:
            if os.fstat(handle.fileno()).st_mode & 0o077:
                logger.warning("credential file readable by others, not used", extra={"path": str(path)})
                return None
            text = handle.read(_CREDENTIAL_MAX_BYTES + 1)
    except OSError:
        return None
    if len(text) > _CREDENTIAL_MAX_BYTES:
        return None
    try:
        return Credential.model_validate_json(text)
    except ValidationError:
        return None


def query_credential(path: Path) -> Credential:
    """The query user's credential of this data directory: the one kept in `path`, else a new one written there."""
    credential = read_credential(path)
    if credential is not None and credential.user == QUERY_USER:
        return credential
    credential = Credential.generate(QUERY_USER)
    kept = {"user": credential.user, "password": credential.password.get_secret_value()}
    write_private_file(path, orjson.dumps(kept).decode() + "\n")
    logger.info("new query user credential", extra={"path": str(path)})
    return credential
