"""Who may call tradetape's HTTP servers, and how long one caller may take to ask: one rule for all of them.

`tradetape web` (http.server), `tradetape mcp --http` (uvicorn) and each service's metrics port
(asyncio streams) are three server stacks; each adapts this rule at its edge:

- `Host` must name the server: its bind address, a loopback name (`localhost`, `127.0.0.1`,
  `[::1]`) with its port, or an entry of `http_allowed_hosts` (`name` at any port, `name:port`,
  or an IP network such as `10.0.0.0/8`: any address in it, as a scraper finding pods by IP
  writes them). A page whose DNS name was re-pointed at this host (DNS rebinding) still sends
  its own name as `Host`, so it is refused (421); an IP address is no name an attacker can
  re-point.
- `Origin`, when a browser sends one, must be `http(s)://` and one of those names (403 otherwise):
  another site's page cannot read from these servers even through a proxy that rewrites `Host`.
- With a token (`mcp --http`), `Authorization: Bearer <token>` on every request, compared in
  constant time (401 otherwise).
- A caller has `request_timeout_s` from its first byte to send its whole request (headers and
  body), and the server holds at most `max_connections` connections; beyond, it closes new ones
  at once.
"""

from __future__ import annotations

import hmac
import ipaddress
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import SecretStr

from tradetape.ground.hosts import (
    DEFAULT_PORTS,
    LOOPBACK_NAMES,
    WILDCARD_ADDRESSES,
    Authority,
    HttpAccessError,
    Network,
    is_loopback,
    parse_allowed_host,
    parse_authority,
)

if TYPE_CHECKING:
    from tradetape.settings import Settings

@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is not answered: its status, a one-line reason, and headers to send with it."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


def _bearer_matches(authorization: str | None, token: SecretStr) -> bool:
    scheme, _, given = (authorization or "").strip().partition(" ")
    # compare_digest takes the same time whatever the first differing byte: the token cannot be guessed bytewise
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode())


@dataclass(frozen=True, slots=True)
class HttpAccess:
    """The access rule of one server: who it answers, the token it asks for, the time and connections a caller gets.

    Built with `for_server` once the port is known (the bind address and port are part of the rule).
    """

    allowed: frozenset[Authority]
    networks: frozenset[Network] = frozenset()
    token: SecretStr | None = None
    request_timeout_s: float = 10.0
    max_connections: int = 64

    @classmethod
    def for_server(cls, settings: Settings, host: str, port: int, token: SecretStr | None = None) -> HttpAccess:
        """The rule for a server listening on `host:port`; `token`: every request must carry it."""
        entries = [parse_allowed_host(entry) for entry in settings.http_allowed_hosts]
        authorities: set[Authority] = {(name, port) for name in LOOPBACK_NAMES}
        if host not in WILDCARD_ADDRESSES:
            authorities.add((host.strip("[]").lower(), port))
        return cls(
            allowed=frozenset(authorities | {entry for entry in entries if isinstance(entry, tuple)}),
            networks=frozenset(entry for entry in entries if not isinstance(entry, tuple)),
            token=token,
            request_timeout_s=settings.http_request_timeout_s,
            max_connections=settings.http_max_connections,
        )

    def refusal(self, headers: Iterable[tuple[str, str]]) -> Refusal | None:
        """None if the request may be answered, else why not; `headers` are its (name, value) pairs."""
        seen: dict[str, list[str]] = {"host": [], "origin": [], "authorization": []}
        for name, value in headers:
            if name.lower() in seen:
                seen[name.lower()].append(value)
        hosts, origins, authorizations = seen["host"], seen["origin"], seen["authorization"]
        if len(hosts) != 1 or not self._accepts(hosts[0], DEFAULT_PORTS["http"]):
            return Refusal(421, "misdirected: Host is no name of this server (TRADETAPE_HTTP_ALLOWED_HOSTS)")
        if len(origins) > 1 or (origins and not self._accepts_origin(origins[0])):
            return Refusal(403, "forbidden: requests from another site's page are refused")
        if self.token is not None and (len(authorizations) != 1 or not _bearer_matches(authorizations[0], self.token)):
            challenge = (("WWW-Authenticate", "Bearer"),)
            return Refusal(401, "unauthorized: Authorization: Bearer <token> is required", challenge)
        return None

    def _accepts(self, value: str, default_port: int) -> bool:
        try:
            name, port = parse_authority(value, default_port)
        except HttpAccessError:
            return False
        return (name, port) in self.allowed or (name, None) in self.allowed or self._in_networks(name)

    def _in_networks(self, name: str) -> bool:
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def _accepts_origin(self, origin: str) -> bool:
        try:
            parts = urlsplit(origin.strip())
        except ValueError:  # an unclosed IPv6 bracket
            return False
        if parts.scheme not in DEFAULT_PORTS or parts.path or parts.query or parts.fragment or not parts.netloc:
            return False
        return self._accepts(parts.netloc, DEFAULT_PORTS[parts.scheme])


def require_token(host: str, token: SecretStr | None, setting: str) -> None:
    """A server reachable from other machines answers only callers holding a token: refuse to start without one."""
    if token is None and not is_loopback(host):
        raise HttpAccessError(
            f"listening on {host} reaches other machines: set {setting} (a long random secret) to require "
            "Authorization: Bearer <token>, or listen on 127.0.0.1"
        )


@dataclass(slots=True)
class ConnectionSlots:
    """At most `limit` connections held at once; thread-safe (http.server's connections have threads of their own)."""

    limit: int
    held: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> bool:
        """True and one slot taken if one is free; False: close the connection at once."""
        with self._lock:
            if self.held >= self.limit:
                return False
            self.held += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self.held -= 1


_LOOPBACK_ORIGIN_NAMES = tuple(f"[{name}]" if ":" in name else name for name in LOOPBACK_NAMES)


def page_origins(host: str, port: int) -> tuple[str, ...]:
    """The http origins of a page served on `host`:`port`.

    The bind address itself, and when it is a loopback or the any-address (0.0.0.0, ::, "") the
    names a local browser reaches it by: 127.0.0.1, localhost and [::1]. A wildcard address is
    no origin a browser sends, so it stands for those names alone.
    """
    name = host.strip().lower().removeprefix("[").removesuffix("]") or "0.0.0.0"
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        names = [name] + (list(_LOOPBACK_ORIGIN_NAMES) if name == "localhost" else [])
    else:
        shown = f"[{address}]" if address.version == 6 else str(address)
        own = [] if address.is_unspecified else [shown]
        names = own + (list(_LOOPBACK_ORIGIN_NAMES) if address.is_loopback or address.is_unspecified else [])
    return tuple(f"http://{name}:{port}" for name in dict.fromkeys(names))
