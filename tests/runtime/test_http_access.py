"""The one access rule of the HTTP servers, as a pure function of a request's headers."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from tradetape.ground.hosts import HttpAccessError, parse_authority
from tradetape.runtime.http_access import ConnectionSlots, HttpAccess, require_token
from tradetape.settings import Settings

TOKEN = "0123456789abcdef-token"


def status(access: HttpAccess, *headers: tuple[str, str]) -> int:
    refused = access.refusal(headers)
    return 200 if refused is None else refused.status


def test_host_must_name_the_server_at_its_port() -> None:
    settings = Settings(http_allowed_hosts="Tape.Example, 10.0.0.7:9000")
    exposed = HttpAccess.for_server(settings, "0.0.0.0", 8766)
    for host in ("127.0.0.1:8766", "localhost:8766", "LocalHost:8766", "[::1]:8766", "tape.example", "tape.example:1"):
        assert status(exposed, ("Host", host)) == 200, host
    for host in ("evil.example:8766", "127.0.0.1:8767", "localhost", "[::1]", "0.0.0.0:8766", "10.0.0.7:9001", ""):
        assert status(exposed, ("Host", host)) == 421, host
    assert status(exposed, ("host", "10.0.0.7:9000")) == 200
    assert status(exposed) == 421
    assert status(exposed, ("Host", "localhost:8766"), ("Host", "evil.example")) == 421

    scraped = HttpAccess.for_server(Settings(http_allowed_hosts="10.0.0.0/8,fd00::/8"), "0.0.0.0", 9464)
    for host in ("10.1.2.3:9464", "10.255.0.1", "[fd00::5]:9464", "127.0.0.1:9464"):
        assert status(scraped, ("Host", host)) == 200, host
    for host in ("11.0.0.1:9464", "[fe80::1]:9464", "10.1.2.3.evil.example:9464", "localhost:80"):
        assert status(scraped, ("Host", host)) == 421, host

    bound = HttpAccess.for_server(Settings(), "192.168.1.5", 80)
    assert status(bound, ("Host", "192.168.1.5")) == 200 and status(bound, ("Host", "192.168.1.5:80")) == 200
    assert status(bound, ("Host", "localhost")) == 200 and status(bound, ("Host", "192.168.1.6")) == 421


def test_origin_when_sent_must_be_one_of_the_servers_names() -> None:
    access = HttpAccess.for_server(Settings(http_allowed_hosts="tape.example"), "127.0.0.1", 8766)
    host = ("Host", "127.0.0.1:8766")
    for origin in ("http://127.0.0.1:8766", "http://localhost:8766", "https://tape.example", "http://tape.example:8"):
        assert status(access, host, ("Origin", origin)) == 200, origin
    for origin in (
        "http://evil.example",
        "http://evil.example:8766",
        "http://localhost:3000",
        "http://localhost",
        "null",
        "file://",
        "ws://127.0.0.1:8766",
        "http://127.0.0.1:8766/path",
        "http://user@127.0.0.1:8766",
        "http://[::1",
    ):
        assert status(access, host, ("Origin", origin)) == 403, origin
    assert status(access, host, ("Origin", "http://localhost:8766"), ("Origin", "http://evil.example")) == 403


def test_a_token_is_asked_of_every_request_and_compared_whole() -> None:
    access = HttpAccess.for_server(Settings(), "0.0.0.0", 8765, token=SecretStr(TOKEN))
    host = ("Host", "127.0.0.1:8765")
    assert status(access, host, ("Authorization", f"Bearer {TOKEN}")) == 200
    assert status(access, host, ("authorization", f"bearer {TOKEN}")) == 200
    for value in (f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN, "Bearer", ""):
        assert status(access, host, ("Authorization", value)) == 401, value
    refused = access.refusal([host])
    assert refused is not None and refused.status == 401 and ("WWW-Authenticate", "Bearer") in refused.headers
    assert status(access, host, ("Authorization", f"Bearer {TOKEN}"), ("Authorization", "Bearer x")) == 401
    assert status(access, ("Host", "evil.example"), ("Authorization", f"Bearer {TOKEN}")) == 421


def test_an_exposed_server_needs_a_token() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        require_token(host, None, "TRADETAPE_MCP_TOKEN")
    require_token("0.0.0.0", SecretStr(TOKEN), "TRADETAPE_MCP_TOKEN")
    for host in ("0.0.0.0", "::", "192.168.1.5", "tape.example"):
        with pytest.raises(HttpAccessError, match="TRADETAPE_MCP_TOKEN"):
            require_token(host, None, "TRADETAPE_MCP_TOKEN")


def test_authorities_parse_as_host_headers_write_them() -> None:
    assert parse_authority("Tape.Example", None) == ("tape.example", None)
    assert parse_authority("tape.example:8080", None) == ("tape.example", 8080)
    assert parse_authority("[::1]:8765", 80) == ("::1", 8765)
    assert parse_authority("[::1]", 80) == ("::1", 80)
    for bad in ("a b", "host:0", "host:70000", "host:x", "[::1", "[::1]x", "user@host", "::1", "", "a/b", ":80"):
        with pytest.raises(HttpAccessError):
            parse_authority(bad, None)


def test_settings_carry_the_allowed_hosts_and_refuse_a_short_token() -> None:
    settings = Settings(http_allowed_hosts=" tape.example ,[::2]:80,, ", mcp_token=TOKEN)
    assert settings.http_allowed_hosts == ("tape.example", "[::2]:80")
    env = settings.to_env()
    assert env["TRADETAPE_HTTP_ALLOWED_HOSTS"] == "tape.example,[::2]:80" and env["TRADETAPE_MCP_TOKEN"] == TOKEN
    with pytest.raises(ValidationError, match="malformed host"):
        Settings(http_allowed_hosts="tape.example,evil example")
    with pytest.raises(ValidationError, match="malformed network"):
        Settings(http_allowed_hosts="10.0.0.1/8")
    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings(mcp_token="short")


def test_connection_slots_are_bounded_and_given_back() -> None:
    slots = ConnectionSlots(2)
    assert slots.take() and slots.take() and not slots.take()
    slots.give_back()
    assert slots.take() and not slots.take()
