"""`tradetape query` and the CLI's help and errors, as a user sees them, against the real services."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import pytest

from tests.cli.conftest import Tradetape
from tests.harness import replay_pipeline, wait_until_stored
from tradetape import __version__

pytestmark = pytest.mark.timeout(90)


@pytest.mark.slow
async def test_queries_render_tables_and_errors_are_one_readable_line(
    nats_url: str, tmp_path: Path, tradetape: Tradetape
) -> None:
    env = {"NATS_URL": nats_url}
    async with replay_pipeline(nats_url, tmp_path) as (_, running, raw):
        await wait_until_stored(raw, "BTCUSDT", 5000, running=running)

        code, out, _ = await tradetape("query", "volume_profile", "BTCUSDT", "--last", "24h", "--rows", "20", env=env)
        assert code == 0 and "BTCUSDT volume profile" in out and "trades 5000" in out
        assert "POC" in out and "VAH" in out and "█" in out and "\x1b[" not in out  # no colours into a pipe

        code, out, _ = await tradetape("query", "liquidity_vacuums", "BTCUSDT", "--last", "24h", env=env)
        assert code == 0 and "thin rows" in out and "share of total volume" in out

        for args, expected in (
            (("bars", "--interval", "1m"), "BTCUSDT bars 1m"),
            (("flow", "--interval", "5m"), "cum. delta"),
            (("vwap", "--bands", "1,2"), "±2σ"),
            (("large_trades", "--top", "5"), "largest 5 shown"),
            (("trades", "--limit", "3"), "more pages follow"),
        ):
            code, out, err = await tradetape("query", args[0], "BTCUSDT", "--last", "24h", *args[1:], env=env)
            assert code == 0 and expected in out, (args, out, err)

        for chart, name, extra in (
            ("volume_profile", "profile.png", ()),
            ("volume_profile", "rows.svg", ("--row-size", "5")),  # a row size of the user's, for both queries
            ("bars", "bars.svg", ()),
            ("footprint", "footprint.png", ("--interval", "1m", "--imbalance", "2")),
            ("market_profile", "tpo.svg", ("--period", "2m", "--row-size", "5")),
        ):
            target = str(tmp_path / name)
            code, out, err = await tradetape("plot", chart, "BTCUSDT", "--last", "24h", *extra, "-o", target, env=env)
            assert code == 0 and (tmp_path / name).stat().st_size > 1000, err

        # a footprint past the server's bound on rows is its one-line error, not a traceback
        code, _, err = await tradetape(
            "plot",
            "footprint",
            "BTCUSDT",
            "--last",
            "24h",
            "--interval",
            "1s",
            "--row-size",
            "0.01",
            "-o",
            str(tmp_path / "huge.png"),
            env=env,
        )
        assert code == 1 and "range_too_large" in err and len(err.strip().splitlines()) == 1, err

        code, out, _ = await tradetape("query", "coverage", "BTCUSDT", "--json", env=env)
        assert code == 0 and json.loads(out)["trade_count"] == 5000

        # the next-page hint repeats every option given (it used to drop --limit: 1,000 rows came back)
        asked = ("query", "trades", "btcusdt", "--last", "24h", "--limit", "3", "--json", "--timeout", "20")
        code, out, err = await tradetape(*asked, env=env)
        first = [t["a"] for t in json.loads(out)["trades"]]
        hint = shlex.split(err.strip().splitlines()[-1].removeprefix("next page: "))
        assert code == 0 and hint[0] == "tradetape" and hint[-2] == "--cursor", err
        assert hint[1:-2] == ["query", "trades", "BTCUSDT", *asked[3:]]
        code, out, err = await tradetape(*hint[1:], env=env)
        assert code == 0 and [t["a"] for t in json.loads(out)["trades"]] == [first[-1] + 1 + i for i in range(3)], err
        code, _, err = await tradetape("query", "trades", "BTCUSDT", "--limit", "4", "--cursor", hint[-1], env=env)
        assert code == 1 and "the cursor belongs to BTCUSDT trades" in err and "limit 3" in err

        profile = ("query", "volume_profile", "BTCUSDT")
        code, _, err = await tradetape(*profile, "--last", "24h", "--min-trades", "9000", env=env)
        assert code == 1 and len(err.strip().splitlines()) == 1
        assert "insufficient_trades" in err and "Lower --min-trades to 5000." in err

        code, _, err = await tradetape(*profile, "--rows", "0", "--value-area", "2", env=env)
        assert code == 1 and len(err.strip().splitlines()) == 1
        assert "rows:" in err and "value_area:" in err and "Value error" not in err and "pydantic" not in err

        code, _, err = await tradetape("query", "coverage", "SOLUSDT", env=env)
        assert code == 2 and "SOLUSDT is not served; served symbols: BTCUSDT" in err


@pytest.mark.slow
async def test_a_name_that_is_no_symbol_fails_at_once_in_one_line(nats_url: str, tradetape: Tradetape) -> None:
    """4,100 characters used to close the CLI's NATS connection: 31 s, then exit 1 with a traceback."""
    for name in ("A" * 4100, "BTC.USDT", ">", "BTC_"):
        started = time.monotonic()
        code, out, err = await tradetape("query", "coverage", name, env={"NATS_URL": nats_url})
        assert code == 1 and out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert "is not a Binance symbol" in err and len(err) < 300
        assert time.monotonic() - started < 15


@pytest.mark.slow
async def test_unknown_method_lists_the_methods(tradetape: Tradetape) -> None:
    code, _, err = await tradetape("query", "vwapp", "BTCUSDT")
    assert code == 2 and "volume_profile" in err and "coverage" in err


@pytest.mark.slow
async def test_version_and_help_show_only_each_commands_own_options(tradetape: Tradetape) -> None:
    code, out, _ = await tradetape("--version")
    assert code == 0 and out.strip() == f"tradetape {__version__}"

    code, out, _ = await tradetape("persist", "--help")
    assert code == 0 and "--shard" in out and "TRADETAPE_SHARD" in out and "example:" in out
    assert "--binance-ws-url" not in out and "--simulate" not in out

    code, out, _ = await tradetape("query", "coverage", "--help")
    assert code == 0 and "--last" in out and "--nats-url" in out
    assert "--row-size" not in out and "--symbols" not in out

    code, out, _ = await tradetape("query", "volume_profile", "--help")
    assert "--row-size" in out and "--min-trades" in out and "(default 1000)" in out


@pytest.mark.slow
async def test_unreachable_nats_says_so(tmp_path: Path, tradetape: Tradetape) -> None:
    code, _, err = await tradetape("query", "coverage", "BTCUSDT", env={"NATS_URL": "nats://127.0.0.1:1"})
    assert code == 2 and "cannot reach NATS at nats://127.0.0.1:1" in err


UNREACHABLE = {"NATS_URL": "nats://127.0.0.1:1"}


@pytest.mark.slow
async def test_a_request_the_model_refuses_is_one_line_before_anything_connects(tradetape: Tradetape) -> None:
    """`--last -1h` was argparse's usage and "expected one argument"; `--row-size` beside `--rows` dropped --rows."""
    for args, says in (
        (("--last", "-1h"), "last: duration '-1h' must be positive; last counts back from now"),
        (("--row-size", "10", "--rows", "5"), "give row_size or rows, not both"),
        (("--start", "2010-01-01"), "before 2017-01-01, Binance's first trade"),
    ):
        code, out, err = await tradetape("query", "volume_profile", "BTCUSDT", *args, env=UNREACHABLE)
        assert code == 1 and out == "" and len(err.strip().splitlines()) == 1, (args, err)
        assert says in err and "usage:" not in err and "microseconds" not in err, (args, err)


@pytest.mark.slow
async def test_bands_take_items_or_a_json_list_as_the_help_shows_them(tradetape: Tradetape) -> None:
    """`--help` showed the default as `[1.0, 2.0, 3.0]`, and `--bands "[0.5, 1]"` then failed."""
    code, out, _ = await tradetape("query", "vwap", "--help", env={"COLUMNS": "200"})
    assert code == 0 and "(default 1,2,3; or a JSON list)" in out
    for bands in ("0.5,1", "[0.5, 1]", "0.5, 1"):
        code, _, err = await tradetape("query", "vwap", "BTCUSDT", "--bands", bands, env=UNREACHABLE)
        assert code == 2 and "cannot reach NATS" in err, (bands, err)  # the request was valid
    code, _, err = await tradetape("query", "vwap", "BTCUSDT", "--bands", "[0.5,", env=UNREACHABLE)
    assert code == 1 and "is not a JSON list" in err


@pytest.mark.slow
async def test_messages_advise_only_what_helps(nats_url: str, tmp_path: Path, tradetape: Tradetape) -> None:
    env = {"NATS_URL": nats_url}
    async with replay_pipeline(nats_url, tmp_path) as (_, running, raw):
        held = await wait_until_stored(raw, "BTCUSDT", 5000, running=running)
        before = str(held["first_time"] - 7_200_000)  # an hour that ends an hour before the first trade
        after = str(held["last_time"] + 1)

        # --end alone is the hour before it (it used to run from 1970: range_too_large, 20,793 days)
        code, out, err = await tradetape("query", "bars", "BTCUSDT", "--end", after, "--interval", "1h", env=env)
        assert code == 0 and "trades 5000" in out, err

        # nothing in the range: lowering --min-trades to 0 found cannot help, widening can
        code, _, err = await tradetape("query", "volume_profile", "BTCUSDT", "--end", before, env=env)
        assert code == 1 and len(err.strip().splitlines()) == 1 and "--min-trades" not in err, err
        assert "Widen the range: the tape holds 5000 BTCUSDT trades from " in err

        # vwap has no --min-trades: it is never suggested
        code, _, err = await tradetape("query", "vwap", "BTCUSDT", "--end", before, env=env)
        assert code == 1 and "insufficient_trades" in err and "--min-trades" not in err, err
        assert "Widen the range: the tape holds 5000 BTCUSDT trades" in err

        # the whole tape in the range: widening cannot help, lowering --min-trades does
        code, _, err = await tradetape(
            "query", "volume_profile", "BTCUSDT", "--last", "24h", "--min-trades", "9000", env=env
        )
        assert code == 1 and err.strip().endswith("Lower --min-trades to 5000.") and "Widen" not in err, err

        code, out, err = await tradetape("query", "coverage", "BTCUSDT", "--end", before, env=env)
        assert code == 0 and "no trades in the range" in out and "None" not in out, err
