"""The simulated exchange's options (`tradetape exchange`, `up --simulate`) and the config they build.

Declaring only (argparse, settings): the exchange itself is imported where it is built.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tradetape.domain.instruments import market_of
from tradetape.settings import Settings, market_of_all


def add_exchange_options(parser: argparse.ArgumentParser) -> None:
    """`tradetape exchange`'s own options: where it listens, what it trades, the faults it injects."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9443, help="0 picks a free port")
    parser.add_argument("--ready-file", type=Path, help="write the served URLs here as JSON once listening")
    add_exchange_source_options(parser)
    parser.add_argument("--drop-every", type=int, default=0, help="skip every Nth trade on the WebSocket")
    parser.add_argument(
        "--drop-after", type=int, default=0, help="skip every trade after the first N of a connection on the WebSocket"
    )
    parser.add_argument("--malformed-every", type=int, default=0, help="send a malformed frame after every Nth trade")
    parser.add_argument("--disconnect-after", type=int, default=0, help="close each connection after N trades")
    parser.add_argument(
        "--invalid-every", type=int, default=0, help="send a frame with an invalid value after every Nth trade"
    )
    parser.add_argument("--duplicate-every", type=int, default=0, help="send every Nth trade twice")
    parser.add_argument("--oversized-every", type=int, default=0, help="send a padded copy after every Nth trade")
    parser.add_argument("--oversized-bytes", type=int, default=1024 * 1024, help="size of an oversized frame")
    parser.add_argument(
        "--shutdown-after", type=int, default=0, help="announce serverShutdown after N trades, close 2 s later"
    )
    parser.add_argument("--silent-after", type=int, default=0, help="go silent (no frames, no pongs) after N trades")
    parser.add_argument("--rest-lag", type=float, default=0.0, help="REST returns only trades older than S seconds")
    parser.add_argument(
        "--rest-error", choices=("503", "429", "418", "html"), default="", help="how REST aggTrades calls fail"
    )
    parser.add_argument("--rest-error-calls", type=int, default=0, help="fail this many REST calls (0: all)")
    parser.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds on 429 and 418")
    stored = parser.add_argument_group("a stored range instead (a bot backtested unchanged)")
    stored.add_argument(
        "--from-store",
        action="store_true",
        help="serve the --symbols' stored trades of --start..--end (replayed over NATS, --speed paced) instead of "
        "generating or replaying files; they start when a first client subscribes",
    )
    stored.add_argument("--start", default=None, help="with --from-store: range start, epoch ms or ISO-8601")
    stored.add_argument("--end", default=None, help="with --from-store: range end, epoch ms or ISO-8601")


def add_exchange_source_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("simulated exchange")
    group.add_argument(
        "--replay",
        action="append",
        type=Path,
        default=None,
        metavar="FILE",
        help="data.binance.vision aggTrades CSV to replay (repeatable); with neither --replay nor --rate, "
        "the bundled BTCUSDT file is replayed and other symbols are generated at 20/s",
    )
    group.add_argument("--speed", type=float, default=None, help="replay speed factor (default: as fast as possible)")
    group.add_argument("--original-times", action="store_true", help="keep the file's trade times")
    group.add_argument(
        "--rate", type=float, default=None, help="generated trades/s for each symbol without a replay file (default 20)"
    )
    group.add_argument("--seed", type=int, default=1)
    group.add_argument(
        "--history-days",
        type=int,
        default=7,
        help="finished days of history the simulator invents before its first start, for fetch-history (default 7)",
    )


def exchange_source_args(args: argparse.Namespace) -> list[str]:
    """The simulated-exchange options given to `up`, as arguments of the `tradetape exchange` child."""
    argv: list[str] = []
    for path in args.replay or ():
        argv += ["--replay", str(Path(path).resolve())]
    if args.speed is not None:
        argv += ["--speed", str(args.speed)]
    if args.original_times:
        argv.append("--original-times")
    if args.rate is not None:
        argv += ["--rate", str(args.rate)]
    argv += ["--seed", str(args.seed), "--history-days", str(args.history_days)]
    return argv


DEMO_SYMBOLS = ("BTCUSDT", "ETHUSDT", "um:BTCUSDT", "cm:BTCUSD_PERP")
"""What the offline demo trades when no symbols are set: spot, USD-M and COIN-M all show."""


def demo_settings(settings: Settings) -> Settings:
    """The offline demo's settings (`up --simulate`, `exchange`): `DEMO_SYMBOLS` unless symbols were set."""
    if "symbols" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"symbols": DEMO_SYMBOLS})


def simulated_symbols(settings: Settings) -> tuple[str, ...]:
    """The instruments the simulator lists: every one named, and for a market named by its `ALL` the demo's.

    The simulator is the exchange, so `um:ALL` asks it what USD-M trades: the demo's USD-M instruments.
    """
    named = tuple(s for s in settings.symbols if market_of_all(s) is None)
    whole = settings.markets_from_exchange
    return (*named, *(s for s in DEMO_SYMBOLS if market_of(s) in whole and s not in named)) or DEMO_SYMBOLS


def exchange_config(args: argparse.Namespace, settings: Settings) -> object:
    from tradetape.services.exchange import BUNDLED_REPLAY, ExchangeConfig, FaultConfig
    from tradetape.services.exchange.stored import replayed

    if args.replay:
        replay: tuple[Path, ...] = tuple(args.replay)
    else:
        replay = () if args.rate is not None else (BUNDLED_REPLAY,)
    from_store = getattr(args, "from_store", False)  # `up --simulate` has no --from-store
    symbols = simulated_symbols(settings)
    return ExchangeConfig(
        host=args.host,
        port=args.port,
        symbols=symbols,
        replay=() if from_store else replay,
        speed=args.speed,
        original_times=args.original_times,
        rate=args.rate if args.rate is not None else 20.0,
        seed=args.seed,
        state_dir=None if from_store else settings.data_dir / "exchange",
        history_days=0 if from_store else args.history_days,
        stored=replayed(settings, symbols, args.start, args.end, args.speed) if from_store else None,
        faults=FaultConfig(
            drop_every=args.drop_every,
            drop_after=args.drop_after,
            malformed_every=args.malformed_every,
            disconnect_after=args.disconnect_after,
            invalid_every=args.invalid_every,
            duplicate_every=args.duplicate_every,
            oversized_every=args.oversized_every,
            oversized_bytes=args.oversized_bytes,
            shutdown_after=args.shutdown_after,
            silent_after=args.silent_after,
            rest_lag_s=args.rest_lag,
            rest_error=args.rest_error,
            rest_error_calls=args.rest_error_calls,
            retry_after_s=args.retry_after,
        ),
    )
