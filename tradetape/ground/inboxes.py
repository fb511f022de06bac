"""The inbox namespace: the prefix each role's connection makes its inboxes under.

Below the settings (which check `TRADETAPE_NATS_INBOX_PREFIX` with it) and the bus, whose
reply guard (`tradetape.bus.replies`) answers only subjects in this namespace.
"""

from __future__ import annotations

from collections.abc import Mapping

DEFAULT_INBOX_PREFIX = "_INBOX"
INBOX_PREFIX_PATTERN = r"^_INBOX(_[A-Z0-9]+)?$"
ROLE_INBOX_PREFIXES: Mapping[str, str] = {
    role: f"_INBOX_{role.upper()}" for role in ("ingest", "persist", "analytics", "query", "importer", "monitor")
}
"""The inbox prefix of each role of `deploy/nats/auth.conf` (`admin` keeps `_INBOX`)."""
