"""`tradetape ...` run in the test's own process: `main` in a directory and environment of the test's choosing.

The whole command but the interpreter's start (about 0.7 s of imports a command on a 2-core machine);
tests/cli/test_options.py runs the entry point, `python -m tradetape.cli`, itself. A test whose services answer
on its own event loop runs the command in a thread (`await asyncio.to_thread(cli, ...)`): its stderr then shows
only what the command's thread logged, as a process of its own would, not the services' log lines.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Protocol

import pytest

from tradetape.cli.main import main
from tradetape.runtime import logs


class Cli(Protocol):
    def __call__(self, cwd: Path, *args: str, **env: str) -> tuple[int, str, str]:
        """The exit code, stdout and stderr of `tradetape *args` run in `cwd`, the environment's tradetape variables
        (`TRADETAPE_*`, `NATS_URL`) replaced by `env`."""
        ...


def in_process_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    configure_logging = logs.configure_logging

    def own_thread_logging(level: str = "INFO", log_format: logs.LogFormat = "kv") -> None:
        configure_logging(level, log_format)
        thread = threading.get_ident()
        for handler in logging.getLogger().handlers:
            handler.addFilter(lambda record: record.thread == thread)

    def run(cwd: Path, *args: str, **env: str) -> tuple[int, str, str]:
        capsys.readouterr()
        with monkeypatch.context() as patch:
            for key in [k for k in os.environ if k == "NATS_URL" or k.startswith("TRADETAPE_")]:
                patch.delenv(key)
            for key, value in env.items():
                patch.setenv(key, value)
            patch.chdir(cwd)
            patch.setattr(logs, "configure_logging", own_thread_logging)
            try:
                code = main(list(args))
            except SystemExit as exited:  # argparse's --help, --version and usage errors, as the process exits
                code = exited.code if isinstance(exited.code, int) else int(exited.code is not None)
        shown = capsys.readouterr()
        return code, shown.out, shown.err

    return run
