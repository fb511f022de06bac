"""Credentials never shown: the user info of every URL in a text, masked."""

from __future__ import annotations

import re

REDACTED = "***"
_USERINFO = re.compile(r'(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?P<userinfo>[^@/\s",]+)@', re.IGNORECASE)


def redact_url(text: str) -> str:
    """`text` with the user info of every URL in it masked.

    `nats://ingest:S3cret@host` → `nats://ingest:***@host`; a lone user part is a token
    (`nats://TOKEN@host` → `nats://***@host`). Works on one URL, a comma-separated list, or
    a free-text line that contains URLs. User info holds no `/`, `"`, `,` or blank (they are
    percent-encoded in a URL), so a match never runs past the URL it starts in.
    """
    return _USERINFO.sub(_mask, text)


def _mask(match: re.Match[str]) -> str:
    user, colon, _ = match["userinfo"].partition(":")
    shown = f"{user}:{REDACTED}" if colon else REDACTED
    return f"{match['scheme']}{shown}@"
