"""Host names and addresses as `Host` headers, bind addresses and `http_allowed_hosts` write them.

Pure parsing, below the settings (which check `http_allowed_hosts` with it) and the HTTP
surfaces' access rule (`tradetape.runtime.http_access`), which both use it.
"""

from __future__ import annotations

import ipaddress

from tradetape.errors import ConfigError

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARD_ADDRESSES = ("", "0.0.0.0", "::")
DEFAULT_PORTS = {"http": 80, "https": 443}

Authority = tuple[str, int | None]
"""A host name or address (lower case, IPv6 without brackets) and a port; None: any port (allowed hosts only)."""
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class HttpAccessError(ConfigError, ValueError):
    """A server cannot be started as configured (exposed without a token), or an allowed host is malformed."""


def parse_authority(value: str, default_port: int | None) -> Authority:
    """`name`, `name:port`, `[v6]` or `[v6]:port` (as `Host` and `http_allowed_hosts` write them)."""
    text = value.strip().lower()
    if text.startswith("["):
        name, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise HttpAccessError(f"malformed host {value!r}")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        name, _, port_text = text.partition(":")
    else:
        name, port_text = text, None
    if not name or any(c in name for c in "/@?#\\ \t") or (":" in name and not text.startswith("[")):
        raise HttpAccessError(f"malformed host {value!r}")
    if port_text is None:
        return name, default_port
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise HttpAccessError(f"malformed port in host {value!r}")
    return name, int(port_text)


def parse_allowed_host(entry: str) -> Authority | Network:
    """An `http_allowed_hosts` entry: `name`, `name:port`, `[v6]:port`, or an IP network (`10.0.0.0/8`)."""
    if "/" in entry:
        try:
            return ipaddress.ip_network(entry.strip())
        except ValueError as exc:
            raise HttpAccessError(f"malformed network {entry!r}: {exc}") from None
    return parse_authority(entry, None)


def is_loopback(host: str) -> bool:
    """Whether a bind address only this machine can reach."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
