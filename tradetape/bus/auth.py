"""NATS credentials and TLS: from the settings into `connect()`, and never into a log or a readable file.

A service proves who it is with one of: a user and password (settings, or inside
`NATS_URL` as `nats://user:pass@host`), a token, an nkey seed file, or a creds file (a
user JWT with its seed, for servers in operator mode); TLS adds a CA to trust and a client
certificate and key for servers that verify clients. Which subjects each user may use is
the server's business: `deploy/nats/auth.conf` holds one user per role.

Secrets stay `SecretStr` until the moment they are handed to nats-py; every URL that is
logged or printed goes through `tradetape.ground.redaction.redact_url` (the log formatters apply
it to every line as well); files that hold URLs or secrets are created 0600 by
`tradetape.ground.private_files.write_private_file`.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr

from tradetape.ground.inboxes import DEFAULT_INBOX_PREFIX
from tradetape.settings import Settings


class NatsAuth(BaseModel):
    """How one client authenticates to NATS, what TLS it speaks and under which inbox prefix; built from `Settings`."""

    model_config = ConfigDict(frozen=True)

    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    nkey_seed_file: Path | None = None
    creds_file: Path | None = None
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    inbox_prefix: str = DEFAULT_INBOX_PREFIX
    """The first token of this client's inboxes: its role may subscribe to those only (`tradetape.bus.replies`)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> NatsAuth:
        return cls(
            user=settings.nats_user,
            password=settings.nats_password,
            token=settings.nats_token,
            nkey_seed_file=settings.nats_nkey_seed_file,
            creds_file=settings.nats_creds_file,
            tls_ca_file=settings.nats_tls_ca_file,
            tls_cert_file=settings.nats_tls_cert_file,
            tls_key_file=settings.nats_tls_key_file,
            inbox_prefix=settings.nats_inbox_prefix,
        )

    @property
    def uses_tls(self) -> bool:
        return self.tls_ca_file is not None or self.tls_cert_file is not None

    def tls_context(self) -> ssl.SSLContext | None:
        """A context trusting the CA (else the system's) with the client certificate; None without TLS settings."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(self.tls_ca_file) if self.tls_ca_file else None
        )
        if self.tls_cert_file is not None:
            context.load_cert_chain(str(self.tls_cert_file), str(self.tls_key_file) if self.tls_key_file else None)
        return context

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments for nats-py's `Client.connect`: only the ones set (a URL's user info stays in force)."""
        options: dict[str, Any] = {}
        if self.user is not None and self.password is not None:
            options["user"] = self.user
            options["password"] = self.password.get_secret_value()
        if self.token is not None:
            options["token"] = self.token.get_secret_value()
        if self.nkey_seed_file is not None:
            options["nkeys_seed"] = str(self.nkey_seed_file)
        if self.creds_file is not None:
            options["user_credentials"] = str(self.creds_file)
        tls = self.tls_context()
        if tls is not None:
            options["tls"] = tls
        return options
