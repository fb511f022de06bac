"""The origins `tradetape web` serves its page from: the only ones `up`'s WebSocket listener lets in.

A browser names the page's origin in every WebSocket upgrade, and a page of any other site
(which could otherwise reach a listener on 127.0.0.1 from the user's own browser) is refused.
"""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


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
        names = [name] + (list(LOOPBACK_NAMES) if name == "localhost" else [])
    else:
        shown = f"[{address}]" if address.version == 6 else str(address)
        own = [] if address.is_unspecified else [shown]
        names = own + (list(LOOPBACK_NAMES) if address.is_loopback or address.is_unspecified else [])
    return tuple(f"http://{name}:{port}" for name in dict.fromkeys(names))
