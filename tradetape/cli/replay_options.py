"""The options of `tradetape replay`: declared with argparse alone, so building the parser of any command loads
neither polars nor pyarrow nor the client; streaming is `tradetape.cli.replay`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from tradetape.cli.options import add_settings


def add_replay_command(parser: argparse.ArgumentParser, settings_fields: Sequence[str]) -> None:
    parser.add_argument("symbols", nargs="+", metavar="SYMBOL", help="instruments (BTCUSDT, um:BTCUSDT)")
    parser.add_argument("--start", help="range start, epoch ms or ISO-8601 (inclusive)")
    parser.add_argument("--end", help="range end, epoch ms or ISO-8601 (exclusive)")
    parser.add_argument("--last", help="instead of --start/--end: this long before now (15m, 1h, 1d)")
    parser.add_argument("--speed", type=float, default=None, help="pace by trade time (1: real time)")
    parser.add_argument(
        "-o", "--output", default=None, metavar="FILE", help="FILE.jsonl, FILE.parquet or - (stdout, the default)"
    )
    parser.add_argument(
        "--to-subject", default=None, metavar="S", help="publish Binance combined-stream aggTrade frames to subject S"
    )
    parser.add_argument("--chunk", type=int, help="trades a chunk (default 10,000, at most 20,000)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each chunk")
    add_settings(parser, settings_fields)
