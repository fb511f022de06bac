"""The Python client against the real services: typed replies, DataFrames, errors, discovery."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from nats.errors import ConnectionClosedError

from tests.harness import replay_pipeline, request, wait_until_stored
from tradetape.api.methods.coverage import CoverageReply
from tradetape.api.methods.volume_profile import VolumeProfileReply
from tradetape.client import ClientQueryError, SyncTapeClient, TapeClient, TapeUnavailable

pytestmark = pytest.mark.timeout(90)


@pytest.mark.slow
async def test_client_answers_every_method_as_the_wire_does(nats_url: str, tmp_path: Path) -> None:
    async with replay_pipeline(nats_url, tmp_path) as (_, running, raw):
        await wait_until_stored(raw, "BTCUSDT", 5000, running=running)
        async with await TapeClient.connect(url=nats_url) as tape:
            profile = await tape.query("volume_profile", "btcusdt", last="24h", row_size="10")
            assert isinstance(profile, VolumeProfileReply)
            wire, _ = await request(raw, "tape.query.volume_profile.BTCUSDT", {"last": "24h", "row_size": "10"})
            assert profile.model_dump(exclude={"start", "end"}) == {
                k: v for k, v in wire.items() if k not in ("start", "end")
            }

            rows = profile.to_polars()
            assert rows.height == len(profile.rows)
            assert rows.schema["volume"] == pl.Decimal(38, 8) and rows.schema["trade_count"] == pl.Int64
            assert Decimal(str(rows["volume"].sum())) == Decimal(profile.total_volume)
            assert int(rows["trade_count"].sum()) == 5000

            coverage = await tape.query("coverage", "BTCUSDT")
            assert isinstance(coverage, CoverageReply) and coverage.trade_count == 5000
            assert coverage.to_polars().height == 0

            with pytest.raises(ClientQueryError) as rejected:
                await tape.query("volume_profile", "BTCUSDT", last="24h", min_trades=10_000)
            assert rejected.value.code == "insufficient_trades" and rejected.value.details["found"] == 5000

            with pytest.raises(ClientQueryError) as invalid:  # checked before it is sent
                await tape.query("volume_profile", "BTCUSDT", rows=0)
            assert invalid.value.code == "invalid_request" and invalid.value.details["errors"][0]["field"] == "rows"

            # an unknown method was a bare KeyError, an unserved symbol did not say what is served
            with pytest.raises(ClientQueryError, match="unknown query method 'no_such_method'; known: bars, cov"):
                await tape.query("no_such_method", "BTCUSDT")
            with pytest.raises(TapeUnavailable, match="SOLUSDT is not served; served symbols: BTCUSDT") as unserved:
                await tape.query("coverage", "SOLUSDT")
            assert unserved.value.served is not None and "coverage" in unserved.value.served["BTCUSDT"]

            vacuums = await tape.query("liquidity_vacuums", "BTCUSDT", last="24h", row_size="1", min_trades=1)
            assert vacuums.to_polars().height == len(vacuums.vacuums)
            served = await tape.served()
            assert set(served) == {"BTCUSDT"} and "volume_profile" in served["BTCUSDT"]

        def sync_coverage() -> int:
            with SyncTapeClient.connect(url=nats_url) as tape:
                reply = tape.query("coverage", "BTCUSDT")
                return int(reply.trade_count)

        assert await asyncio.to_thread(sync_coverage) == 5000


@pytest.mark.slow
async def test_unreachable_nats_is_a_clear_error() -> None:
    with pytest.raises(TapeUnavailable, match="cannot reach NATS at nats://127.0.0.1:1"):
        await TapeClient.connect(url="nats://127.0.0.1:1")


async def test_a_connection_the_server_closed_is_opened_again_until_the_client_is_closed(nats_url: str) -> None:
    """nats-py stays closed after a server's `-ERR`; a long-lived client (the MCP server) must not."""
    tape = await TapeClient.connect(url=nats_url)
    try:
        first = tape.nc
        await first.publish("x" * 5000, b"")  # past the control line: the server drops the connection
        for _ in range(100):
            if first.is_closed:
                break
            await asyncio.sleep(0.05)
        assert first.is_closed
        assert await tape.served() == {}  # nobody serves, but the question was asked on a new connection
        assert tape.nc is not first and tape.nc.is_connected
        with pytest.raises(ClientQueryError, match="is not a Binance symbol"):
            await tape.query("coverage", "x" * 5000)
        assert tape.nc.is_connected
    finally:
        await tape.close()
    assert tape.nc.is_closed
    with pytest.raises(ConnectionClosedError):
        await tape.served()
