"""The options of `tradetape query <method> <SYMBOL>`: one sub-command a registered method, one option a field.

Declaring them needs only argparse and the methods' request models, so building the parser of any
command (a service's too) loads no terminal renderer; asking and drawing is `tradetape.cli.query`. The
models (the registry imports every method, polars with them) are imported only when the methods are declared.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from tradetape.cli.options import INSTRUMENT_HELP, add_settings

DEFAULT_TIMEOUT_S = 30.0
VALUE_LIKE_NEGATIVE = re.compile(r"^-\d")
"""An option's value that starts like a negative number (`--last -1h`): taken as the value, so the request
model says what is wrong with it in one line, instead of argparse's "expected one argument"."""


def add_query_command(parser: argparse.ArgumentParser, settings_fields: Sequence[str], *, declare: bool = True) -> None:
    """One sub-command a registered method; none unless `declare` (the arguments parsed name another command)."""
    if not declare:
        return
    from tradetape.api.registry import methods


    by_method = parser.add_subparsers(dest="method", required=True, metavar="METHOD")
    for name, method in methods().items():
        sub = by_method.add_parser(
            name,
            help=method.summary,
            description=method.summary,
            epilog=f"example:\n  tradetape query {name} BTCUSDT --last 1h",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub._negative_number_matcher = VALUE_LIKE_NEGATIVE  # no option of a query starts with -<digit>
        sub.add_argument("symbol", metavar="SYMBOL", help=INSTRUMENT_HELP)
        fields = sub.add_argument_group("request (times: epoch ms or ISO-8601, UTC unless a zone is given)")
        for field, info in method.request.model_fields.items():
            fields.add_argument(
                f"--{field.replace('_', '-')}", dest=f"field_{field}", metavar=field.upper(), help=_field_help(info)
            )
        sub.add_argument(
            "--param", action="append", default=[], metavar="KEY=VALUE", help="any request field, as JSON or text"
        )
        sub.add_argument("--json", action="store_true", help="print the raw JSON reply")
        sub.add_argument(
            "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds to wait for the reply (default 30)"
        )
        add_settings(sub, settings_fields)


def _field_help(info: FieldInfo) -> str:
    text = info.description or ""
    if isinstance(info.default, list):
        text += f" (default {','.join(f'{item:g}' for item in info.default)}; or a JSON list)"
    elif info.default is not PydanticUndefined and info.default is not None:
        text += f" (default {info.default})"
    return text
