"""The origins `up`'s WebSocket listener allows: where `tradetape web` serves its page, and nothing else."""

from __future__ import annotations

import pytest

from tradetape.runtime.http_access import page_origins

LOOPBACK = ("http://127.0.0.1:8766", "http://localhost:8766", "http://[::1]:8766")


@pytest.mark.parametrize(
    ("host", "origins"),
    [
        ("127.0.0.1", LOOPBACK),
        ("localhost", ("http://localhost:8766", "http://127.0.0.1:8766", "http://[::1]:8766")),
        ("::1", ("http://[::1]:8766", "http://127.0.0.1:8766", "http://localhost:8766")),
        ("127.0.0.2", ("http://127.0.0.2:8766", *LOOPBACK)),
        ("0.0.0.0", LOOPBACK),
        ("::", LOOPBACK),
        ("", LOOPBACK),
        ("192.168.1.5", ("http://192.168.1.5:8766",)),
        ("Tape.Example", ("http://tape.example:8766",)),
    ],
)
def test_the_bind_address_and_the_names_a_local_browser_uses(host: str, origins: tuple[str, ...]) -> None:
    assert page_origins(host, 8766) == origins
