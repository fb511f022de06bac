"""Where the CLI draws on stdout: rich in a terminal, plain full-width text into a pipe or a file."""

from __future__ import annotations

import sys

from rich.console import Console

PIPE_WIDTH = 100_000
"""Columns when stdout is not a terminal: rich pads no line, so tables are as wide as their content, never cut."""


def console_for_stdout() -> Console:
    """Rich in a terminal; into a pipe or file plain text, no colour, no column ever cut to fit a width."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=PIPE_WIDTH, no_color=True, highlight=False)
