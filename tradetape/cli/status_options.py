"""The options of `tradetape status`; running it and drawing its screen is `tradetape.cli.status` (rich)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from tradetape.cli.options import add_settings


def add_status_command(parser: argparse.ArgumentParser, settings_fields: Sequence[str]) -> None:

    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    parser.add_argument("--watch", type=float, metavar="SECONDS", help="refresh every SECONDS until Ctrl-C")
    add_settings(parser, settings_fields)
