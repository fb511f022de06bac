"""The embedded server's users: the query role as auth.conf defines it, a credential kept per data dir and private."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from pydantic import SecretStr

from tradetape.runtime.nats_server import EmbeddedNatsServer
from tradetape.runtime.nats_users import (
    QUERY_PERMISSIONS,
    QUERY_USER,
    Credential,
    EmbeddedUsers,
    query_credential,
    read_credential,
    with_credential,
)

AUTH_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nats" / "auth.conf"


def conf_role(text: str, name: str) -> dict[str, Any]:
    """Role `name` of an auth.conf: its publish and subscribe lists; anything else in the block fails the test."""
    text = re.sub(r"#[^\n]*", "", text)
    opened = re.search(rf"\b{name}\s*[=:]\s*\{{", text)
    assert opened is not None, f"no role {name}"
    depth, end = 1, opened.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(text[end], 0)
        end += 1
    block = text[opened.end() : end - 1]
    role: dict[str, Any] = {}
    for action in ("publish", "subscribe"):
        pattern = rf"\b{action}\s*[=:]\s*\{{\s*allow\s*[=:]\s*(\[[^\]]*\])\s*\}}"
        found = re.search(pattern, block)
        if found is not None:
            role[action] = {"allow": json.loads(found[1])}
            block = block.replace(found[0], "")
    assert block.strip() == "", f"{name} holds more than publish and subscribe allow lists: {block.strip()}"
    return role


def test_the_embedded_query_user_has_exactly_auth_confs_query_role() -> None:
    assert conf_role(AUTH_CONF.read_text(), "QUERY") == QUERY_PERMISSIONS
    users = EmbeddedUsers(internal=Credential.generate("tradetape"), query=Credential.generate(QUERY_USER))
    query = next(user for user in users.authorization()["users"] if user["user"] == QUERY_USER)
    assert query["permissions"] == QUERY_PERMISSIONS


def test_the_role_reader_sees_every_difference() -> None:
    """The comparison above can fail: the reader returns a role's lists and refuses anything more in it."""
    conf = (
        'authorization {\n  Q = {\n    publish = { allow = ["a.>"] }  # ask\n'
        '    subscribe = { allow = ["b", "c"] }\n%s  }\n}'
    )
    assert conf_role(conf % "", "Q") == {"publish": {"allow": ["a.>"]}, "subscribe": {"allow": ["b", "c"]}}
    for extra in ("    allow_responses = true\n", '    subscribe = { deny = ["d"] }\n'):
        with pytest.raises(AssertionError, match="more than"):
            conf_role(conf % extra, "Q")


def test_the_query_credential_is_kept_per_data_dir_and_private(tmp_path: Path) -> None:
    path = tmp_path / "a" / "nats-ws.user.json"
    first = query_credential(path)
    assert first.user == QUERY_USER and len(first.password.get_secret_value()) >= 40
    assert path.stat().st_mode & 0o777 == 0o600
    assert query_credential(path) == first
    assert query_credential(tmp_path / "b" / "nats-ws.user.json") != first


@pytest.mark.parametrize(
    "content", ["", "not json", '{"user": "query"}', '{"user": "admin", "password": "x"}', " " * 5000]
)
def test_a_credential_file_that_is_not_ours_is_replaced(tmp_path: Path, content: str) -> None:
    path = tmp_path / "nats-ws.user.json"
    path.write_text(content)
    path.chmod(0o600)
    made = query_credential(path)
    assert made.user == QUERY_USER and read_credential(path) == made


def test_a_credential_others_could_read_is_not_used(tmp_path: Path) -> None:
    path = tmp_path / "nats-ws.user.json"
    first = query_credential(path)
    path.chmod(0o644)
    assert read_credential(path) is None
    second = query_credential(path)
    assert second != first and path.stat().st_mode & 0o777 == 0o600


def test_the_url_carries_the_credential_percent_encoded() -> None:
    credential = Credential(user="tradetape", password=SecretStr("p@ss:w/rd"))
    url = with_credential("nats://127.0.0.1:4222", credential)
    parts = urlsplit(url)
    assert (unquote(parts.username or ""), unquote(parts.password or "")) == ("tradetape", "p@ss:w/rd")
    assert (parts.hostname, parts.port) == ("127.0.0.1", 4222)


def test_users_come_from_one_place_only(tmp_path: Path) -> None:
    users = EmbeddedUsers(internal=Credential.generate("tradetape"), query=Credential.generate(QUERY_USER))
    with pytest.raises(ValueError, match="users"):
        EmbeddedNatsServer(tmp_path, config_file=AUTH_CONF, users=users)
