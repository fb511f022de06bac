"""`tradetape ...` run in the test's own process: `main` in a directory and environment of the test's choosing.

The whole command but the interpreter's start (about 0.7 s of imports a command on a 2-core machine);
tests/cli/test_options.py runs the entry point, `python -m tradetape.cli`, itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import pytest

from tradetape.cli.main import main


class Cli(Protocol):
    def __call__(self, cwd: Path, *args: str, **env: str) -> tuple[int, str, str]:
        """The exit code, stdout and stderr of `tradetape *args` run in `cwd`, the environment's tradetape variables
        (`TRADETAPE_*`, `NATS_URL`) replaced by `env`."""
        ...


def in_process_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    def run(cwd: Path, *args: str, **env: str) -> tuple[int, str, str]:
        capsys.readouterr()
        with monkeypatch.context() as patch:
            for key in [k for k in os.environ if k == "NATS_URL" or k.startswith("TRADETAPE_")]:
                patch.delenv(key)
            for key, value in env.items():
                patch.setenv(key, value)
            patch.chdir(cwd)
            code = main(list(args))
        shown = capsys.readouterr()
        return code, shown.out, shown.err

    return run
