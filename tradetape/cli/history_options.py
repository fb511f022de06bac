"""The options of `tradetape import | fetch-history | export | repair`; running them is `tradetape.cli.history`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import date
from pathlib import Path

from tradetape.cli.options import INSTRUMENT_HELP
from tradetape.settings import MARKET_URL_FIELDS, MARKET_WEIGHT_FIELDS

STORE_SETTINGS = (
    "data_dir", "symbols", "shard", "shard_count", "shard_index", "rollup_age_s", "retention_days", "log_level",
)
IMPORT_SETTINGS = ("import_max_line_bytes", "import_max_member_bytes", "import_max_members")
FETCH_SETTINGS = ("history_url", "history_max_download_bytes", "history_download_deadline_s")
EXAMPLES = {
    "import": "tradetape import BTCUSDT-aggTrades-2026-01-01.zip BTCUSDT-aggTrades-2026-01-02.zip",
    "fetch-history": "tradetape fetch-history BTCUSDT --from 2026-01-01 --to 2026-01-31",
    "export": "tradetape export BTCUSDT --start 2026-01-01 --end 2026-01-08 -o btc-week.parquet",
    "repair": "tradetape repair BTCUSDT --last 24h",
}
HELP = {
    "import": "import aggTrades dumps (zip or CSV, data.binance.vision format) or tradetape exports",
    "fetch-history": "download Binance's daily/monthly dumps for a date range, verify SHA-256 and import them",
    "export": "write a range of the tape to Parquet or CSV (by the extension)",
    "repair": "close the store's gaps (completeness index) from the instrument's market's REST aggTrades?fromId=",
}


def add_history_commands(
    make: Callable[[str, str, str], argparse.ArgumentParser],
    add_settings: Callable[[argparse.ArgumentParser, tuple[str, ...]], None],
    nats_settings: tuple[str, ...],
) -> None:
    """The four commands; `make(name, help, example)` creates a sub-command parser."""
    write_settings = (*nats_settings, *STORE_SETTINGS)
    imp = make("import", HELP["import"], EXAMPLES["import"])
    imp.add_argument("files", nargs="+", type=Path, metavar="FILE")
    imp.add_argument(
        "--symbol",
        help="the files' instrument (BTCUSDT, um:BTCUSDT), when neither an export's label nor the name "
        "(SYMBOL-aggTrades-...) tells",
    )
    add_settings(imp, (*write_settings, *IMPORT_SETTINGS))

    fetch = make("fetch-history", HELP["fetch-history"], EXAMPLES["fetch-history"])
    fetch.add_argument("symbols_to_fetch", nargs="+", metavar="SYMBOL", help=INSTRUMENT_HELP)
    fetch.add_argument("--from", dest="first", required=True, type=date.fromisoformat, help="first day, YYYY-MM-DD")
    fetch.add_argument("--to", dest="last", required=True, type=date.fromisoformat, help="last day (inclusive)")
    fetch.add_argument(
        "--wait-for-persist",
        type=float,
        default=0.0,
        metavar="S",
        help="always import through persist, waiting up to S seconds for it to answer (as `up` backfills)",
    )
    add_settings(fetch, (*write_settings, *IMPORT_SETTINGS, *FETCH_SETTINGS))

    export = make("export", HELP["export"], EXAMPLES["export"])
    export.add_argument("symbol", metavar="SYMBOL", help=INSTRUMENT_HELP)
    _range_options(export)
    export.add_argument("-o", "--output", required=True, type=Path, help="FILE.parquet or FILE.csv")
    add_settings(export, STORE_SETTINGS)

    repair = make("repair", HELP["repair"], EXAMPLES["repair"])
    repair.add_argument("symbol", metavar="SYMBOL", help=INSTRUMENT_HELP)
    _range_options(repair)
    repair.add_argument(
        "--dump-min-gap",
        type=int,
        default=100_000,
        metavar="N",
        help="gaps of N or more ids in past days come from the daily dumps first (0: REST only)",
    )
    rest_settings = (*(urls[1] for urls in MARKET_URL_FIELDS.values()), *MARKET_WEIGHT_FIELDS.values())
    add_settings(repair, (*write_settings, *rest_settings, *IMPORT_SETTINGS, *FETCH_SETTINGS))


def _range_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--start", help="epoch ms or ISO-8601 (UTC unless it names a zone)")
    parser.add_argument("--end", help="epoch ms or ISO-8601; default now")
    parser.add_argument("--last", help="a duration ending now: 15m, 24h, 7d")
