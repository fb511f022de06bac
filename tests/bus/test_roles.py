"""The NATS roles are written once (`tradetape.bus.roles`): deploy/nats/auth.conf is what the table renders,
and the rendered file says exactly the table's lists, role by role."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tradetape.bus.roles import ROLES, auth_conf

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


def test_the_committed_auth_conf_is_what_the_table_renders() -> None:
    assert AUTH_CONF.read_text() == auth_conf(), "run `tradetape nats-auth > deploy/nats/auth.conf`"


@pytest.mark.slow
def test_the_cli_prints_the_rendered_file() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tradetape.cli", "nats-auth"], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout == auth_conf()


@pytest.mark.parametrize("role", ROLES, ids=lambda role: role.name)
def test_every_role_reads_back_from_the_rendered_file_as_the_table_says(role: Any) -> None:
    text = auth_conf()
    assert conf_role(text, role.name.upper()) == role.permissions()
    password = f"$TRADETAPE_{role.name.upper()}_PASSWORD"
    assert f"{{ user: {role.name}, password: {password}, permissions: ${role.name.upper()} }}" in text


def test_admin_is_the_one_user_without_a_role() -> None:
    users = re.findall(r"\{ user: (\w+), password: \$\w+(?:, permissions: \$(\w+))? \}", auth_conf())
    assert users == [*((role.name, role.name.upper()) for role in ROLES), ("admin", "")]


def test_the_role_reader_sees_every_difference() -> None:
    """The comparisons above can fail: the reader returns a role's lists and refuses anything more in it."""
    conf = (
        'authorization {\n  Q = {\n    publish = { allow = ["a.>"] }  # ask\n'
        '    subscribe = { allow = ["b", "c"] }\n%s  }\n}'
    )
    assert conf_role(conf % "", "Q") == {"publish": {"allow": ["a.>"]}, "subscribe": {"allow": ["b", "c"]}}
    for extra in ("    allow_responses = true\n", '    subscribe = { deny = ["d"] }\n'):
        with pytest.raises(AssertionError, match="more than"):
            conf_role(conf % extra, "Q")
