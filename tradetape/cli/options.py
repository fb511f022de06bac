"""The options every command shares: the settings section of its help, one option per field."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from tradetape.config_file import CONFIG_ENV, CONFIG_FILE
from tradetape.settings import Settings

INSTRUMENT_HELP = "an instrument: BTCUSDT (spot), um:BTCUSDT (USD-M futures), cm:BTCUSD_PERP (COIN-M futures)"
"""The help of every command's instrument argument (`tradetape.domain.instruments`)."""


def add_settings(parser: argparse.ArgumentParser, fields: Sequence[str]) -> None:
    """The settings section of a command's help: one option per field, named after its variable."""
    group = parser.add_argument_group(
        "settings (an option wins over its environment variable, which wins over the config file)"
    )
    group.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"settings file (TOML, field names as keys; default ./{CONFIG_FILE} when present, or ${CONFIG_ENV})",
    )
    for field in fields:
        info = Settings.model_fields[field]
        default = "" if info.default is None else f", default {_plain_default(info.default)}"
        group.add_argument(
            Settings.flag(field),
            dest=f"setting_{field}",
            default=None,
            metavar=Settings.env_name(field),
            help=_literal(f"{info.description} ({Settings.env_name(field)}{default})"),
        )


def _plain_default(value: object) -> str:
    return ",".join(value) if isinstance(value, tuple) else str(value)


def _literal(text: str) -> str:
    """`text` as argparse help shows it: argparse %-formats help, so a `%` in a description is doubled."""
    return text.replace("%", "%%")
