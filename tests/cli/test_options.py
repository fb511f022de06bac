"""Every command's help prints: a `%` in a setting's description is text, not an argparse format."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tradetape.cli.completion import command_tree
from tradetape.cli.main import build_parser

pytestmark = pytest.mark.timeout(120)

COMMANDS = [command.path for command in command_tree(build_parser()).commands]


@pytest.mark.slow
@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(path) for path in COMMANDS])
def test_help_prints(path: tuple[str, ...]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tradetape.cli", *path, "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: tradetape")


@pytest.mark.slow
def test_percent_in_a_description_is_shown() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tradetape.cli", "ingest", "--help"], capture_output=True, text=True, timeout=60
    )
    assert "+-20 %" in done.stdout, done.stderr
