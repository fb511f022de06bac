"""The walking skeleton, end to end: simulator → ingest → JetStream → persist → RocksDB → analytics.

The simulator replays the real BTCUSDT file as fast as possible over a real WebSocket;
the reply of `volume_profile`, asked by a plain NATS client, must equal the profile
computed straight from the CSV by the docs/design.md rules.
"""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

import pytest

from tests.harness import replay_pipeline, request, wait_for, wait_until_stored
from tests.reference_profile import reference_profile, reference_vacuums
from tradetape.services.exchange import BUNDLED_REPLAY, FaultConfig

pytestmark = pytest.mark.timeout(120)



def csv_trades(path: Path) -> list[tuple[str, str, bool]]:
    with path.open() as handle:
        return [(row[1], row[2], row[6].lower() == "true") for row in csv.reader(handle)]


@pytest.mark.slow
async def test_replayed_file_is_stored_completely_and_profiled_exactly(nats_url: str, tmp_path: Path) -> None:
    async with replay_pipeline(nats_url, tmp_path / "data") as (_, running, client):
        coverage = await wait_until_stored(client, "BTCUSDT", 5000, running=running)
        assert coverage["first_id"] == 3800397495
        assert coverage["last_id"] == 3800402494
        assert coverage["gaps"] == []
        span = {"start": coverage["first_time"], "end": coverage["last_time"] + 1}

        body = {**span, "row_size": "10"}
        reply, headers = await request(client, "tape.query.volume_profile.BTCUSDT", body)
        assert "Nats-Service-Error-Code" not in headers
        trades = csv_trades(BUNDLED_REPLAY)
        expected = reference_profile(trades, "10", "0.7")
        assert reply["trade_count"] == 5000
        assert reply["row_size"] == "10"
        rows = [
            (
                Decimal(r["price_low"]),
                Decimal(r["price_high"]),
                Decimal(r["volume"]),
                Decimal(r["buy_volume"]),
                Decimal(r["sell_volume"]),
                r["trade_count"],
            )
            for r in reply["rows"]
        ]
        assert rows == [
            (low, high, vol, buy, sell, int(count)) for _, low, high, vol, buy, sell, count in expected["rows"]
        ]
        assert Decimal(reply["poc"]) == expected["poc"]
        assert Decimal(reply["poc_low"]) == expected["poc"] - 5
        assert Decimal(reply["poc_high"]) == expected["poc"] + 5
        assert Decimal(reply["vah"]) == expected["vah"]
        assert Decimal(reply["val"]) == expected["val"]
        total = sum(Decimal(q) for _, q, _ in trades)
        sold = sum(Decimal(q) for _, q, maker in trades if maker)
        assert (Decimal(reply["total_volume"]), Decimal(reply["sell_volume"])) == (total, sold)
        assert Decimal(reply["buy_volume"]) == total - sold

        vacuum_body = {**span, "row_size": "1", "min_rows": 2, "threshold": 0.3}
        found, _ = await request(client, "tape.query.liquidity_vacuums.BTCUSDT", vacuum_body)
        expected_vacuums = reference_vacuums(reference_profile(trades, "1", "0.7")["rows"], 2, "0.3")
        assert expected_vacuums, "the real file has thin stretches at row size 1"
        got_vacuums = [
            (Decimal(v["price_low"]), Decimal(v["price_high"]), v["rows"], Decimal(v["volume"]))
            for v in found["vacuums"]
        ]
        assert got_vacuums == expected_vacuums

        bad, headers = await request(client, "tape.query.volume_profile.BTCUSDT", b"{not json")
        assert bad["error"]["code"] == "invalid_request"
        assert headers["Nats-Service-Error-Code"] == "400"

        few, _ = await request(
            client, "tape.query.volume_profile.BTCUSDT", {**span, "min_trades": 6000}
        )
        assert few["error"]["code"] == "insufficient_trades"
        assert few["error"]["details"] == {"found": 5000, "needed": 6000}

        again, _ = await request(client, "tape.query.volume_profile.BTCUSDT", body)
        assert again == reply


@pytest.mark.slow
async def test_malformed_frames_are_deadlettered_and_dropped_trades_backfilled(nats_url: str, tmp_path: Path) -> None:
    faults = FaultConfig(malformed_every=500, drop_every=700)
    async with replay_pipeline(nats_url, tmp_path / "data", faults=faults) as (_, running, client):
        coverage = await wait_until_stored(client, "BTCUSDT", 5000, running=running)
        assert coverage["gaps"] == []
        ingest = running.services["ingest"]
        counters = ingest.tapes["BTCUSDT"].counters
        deadlettered = sum(counters.deadletters.values()) + sum(ingest.unknown_deadletters.values())
        assert deadlettered >= 9
        assert counters.backfilled >= 7
        js = client.jetstream()
        info = await wait_for(lambda: js.stream_info("TAPE_DEADLETTER"), 5)
        assert info.state.messages == deadlettered
        first = await js.get_msg("TAPE_DEADLETTER", 1)
        assert first.headers and first.headers.get("Tradetape-Reason")
