"""The embedded server's users: the query role of the one table (as auth.conf says it too), a credential kept
per data dir and private."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from pydantic import SecretStr

from tests.bus.test_roles import conf_role
from tradetape.bus.roles import role
from tradetape.runtime.nats_server import EmbeddedNatsServer
from tradetape.runtime.nats_users import (
    QUERY_USER,
    Credential,
    EmbeddedUsers,
    query_credential,
    read_credential,
    with_credential,
)

AUTH_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nats" / "auth.conf"


def test_the_embedded_query_user_has_exactly_auth_confs_query_role() -> None:
    assert conf_role(AUTH_CONF.read_text(), "QUERY") == role(QUERY_USER).permissions()
    users = EmbeddedUsers(internal=Credential.generate("tradetape"), query=Credential.generate(QUERY_USER))
    query = next(user for user in users.authorization()["users"] if user["user"] == QUERY_USER)
    assert query["permissions"] == role(QUERY_USER).permissions()


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
