"""`tradetape query` and the CLI's help and errors, as a user sees them, against the real services."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
import time
from pathlib import Path

import pytest

from tests.harness import replay_pipeline, wait_until_stored
from tradetape import __version__

pytestmark = pytest.mark.timeout(90)


async def tradetape(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the CLI without blocking the event loop the in-process services answer on."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tradetape.cli",
        *args,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_queries_render_tables_and_errors_are_one_readable_line(nats_url: str, tmp_path: Path) -> None:
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
        ):
            target = str(tmp_path / name)
            code, out, err = await tradetape("plot", chart, "BTCUSDT", "--last", "24h", *extra, "-o", target, env=env)
            assert code == 0 and (tmp_path / name).stat().st_size > 1000, err

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
        assert "insufficient_trades" in err and "--min-trades 5000" in err and "--last 24h" in err

        code, _, err = await tradetape(*profile, "--rows", "0", "--value-area", "2", env=env)
        assert code == 1 and len(err.strip().splitlines()) == 1
        assert "rows:" in err and "value_area:" in err and "Value error" not in err and "pydantic" not in err

        code, _, err = await tradetape("query", "coverage", "SOLUSDT", env=env)
        assert code == 2 and "SOLUSDT is not served; served symbols: BTCUSDT" in err


async def test_a_name_that_is_no_symbol_fails_at_once_in_one_line(nats_url: str) -> None:
    """4,100 characters used to close the CLI's NATS connection: 31 s, then exit 1 with a traceback."""
    for name in ("A" * 4100, "BTC.USDT", ">", "BTC_"):
        started = time.monotonic()
        code, out, err = await tradetape("query", "coverage", name, env={"NATS_URL": nats_url})
        assert code == 1 and out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert "is not a Binance symbol" in err and len(err) < 300
        assert time.monotonic() - started < 15


async def test_unknown_method_lists_the_methods() -> None:
    code, _, err = await tradetape("query", "vwapp", "BTCUSDT")
    assert code == 2 and "volume_profile" in err and "coverage" in err


async def test_version_and_help_show_only_each_commands_own_options() -> None:
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


async def test_unreachable_nats_says_so(tmp_path: Path) -> None:
    code, _, err = await tradetape("query", "coverage", "BTCUSDT", env={"NATS_URL": "nats://127.0.0.1:1"})
    assert code == 2 and "cannot reach NATS at nats://127.0.0.1:1" in err
