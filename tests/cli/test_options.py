"""Every command's help prints: a `%` in a setting's description is text, not an argparse format.

Each help is printed in this process by `main`, as the command line would (parse, print, exit 0): every
command and every query method for the cost of one import. The entry point itself, `python -m
tradetape.cli`, is run once.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tradetape.api.replay import DEFAULT_CHUNK
from tradetape.cli.completion import command_tree
from tradetape.cli.main import build_parser, main

pytestmark = pytest.mark.timeout(120)

PATHS = [command.path for command in command_tree(build_parser()).walk()]


@pytest.mark.parametrize("path", PATHS, ids=[" ".join(path) or "tradetape" for path in PATHS])
def test_help_prints(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*path, "--help"])
    shown = capsys.readouterr()
    assert exited.value.code == 0, shown.err
    assert shown.out.startswith(f"usage: {' '.join(('tradetape', *path))}"), shown.out[:200]


def test_replay_s_help_gives_the_protocol_s_chunk(capsys: pytest.CaptureFixture[str]) -> None:
    """Declaring `replay` imports no protocol (nor polars), so its help spells the default out: it must be this."""
    with pytest.raises(SystemExit):
        main(["replay", "--help"])
    assert f"(default {DEFAULT_CHUNK:,}," in " ".join(capsys.readouterr().out.split())


@pytest.mark.slow
def test_percent_in_a_description_is_shown() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tradetape.cli", "ingest", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.startswith("usage: tradetape ingest"), done.stderr
    assert "+-20 %" in done.stdout, done.stderr
