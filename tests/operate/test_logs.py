"""JSON log lines as an option (`TRADETAPE_LOG_FORMAT=json`); the readable key=value line stays the default."""

from __future__ import annotations

import asyncio
import io
import logging
import signal
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.harness import wait_for
from tests.processes import ServiceProcesses, service_env
from tradetape.runtime.logs import JsonFormatter, KeyValueFormatter
from tradetape.settings import Settings

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, logging.StreamHandler[io.StringIO]]]:
    logger = logging.getLogger("tests.operate.logs")
    handler = logging.StreamHandler(io.StringIO())
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        yield logger, handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


def lines(handler: logging.StreamHandler[io.StringIO]) -> list[str]:
    return handler.stream.getvalue().splitlines()


def test_json_lines_keep_field_types_and_standard_keys(
    captured: tuple[logging.Logger, logging.StreamHandler[io.StringIO]],
) -> None:
    logger, handler = captured
    handler.setFormatter(JsonFormatter())
    logger.warning(
        "gap opened",
        extra={"symbol": "BTCUSDT", "missing": 12, "age_s": 1.5, "level": "shadowed", "path": Path("/data/x")},
    )
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("store failed", extra={"url": "nats://persist:S3cret@nats:4222"})
    first, second = (orjson.loads(line) for line in lines(handler))
    assert first["time"].endswith("Z") and first["level"] == "warning" and first["logger"] == logger.name
    assert first["message"] == "gap opened" and first["symbol"] == "BTCUSDT"
    assert first["missing"] == 12 and first["age_s"] == 1.5 and first["path"] == "/data/x"
    assert first["field.level"] == "shadowed"
    assert second["url"] == "nats://persist:***@nats:4222"
    assert "RuntimeError: boom" in second["exception"] and "S3cret" not in lines(handler)[1]


def test_the_default_line_is_key_value_and_redacted(
    captured: tuple[logging.Logger, logging.StreamHandler[io.StringIO]],
) -> None:
    logger, handler = captured
    handler.setFormatter(KeyValueFormatter())
    logger.info("nats reconnected", extra={"client": "tradetape-ingest", "url": "nats://tok3n@nats:4222"})
    (line,) = lines(handler)
    assert line.endswith(" info tests.operate.logs \"nats reconnected\" client=tradetape-ingest url=nats://***@nats:4222")


@pytest.mark.slow
async def test_a_service_run_with_log_format_json_writes_only_json_lines(
    nats_url: str, tmp_path: Path, processes: ServiceProcesses
) -> None:
    settings = Settings(nats_url=nats_url, data_dir=tmp_path / "data", symbols=("BTCUSDT",), log_format="json")
    env = service_env(settings)
    assert env["TRADETAPE_LOG_FORMAT"] == "json"
    service = processes.start(["analytics"], env)

    async def started() -> bool:
        return '"analytics started"' in processes.log_of(0)

    await wait_for(started, timeout=60)
    service.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(service.wait, 20) == 0
    records = [orjson.loads(line) for line in processes.log_of(0).splitlines()]
    assert {"analytics started", "analytics stopped"} <= {record["message"] for record in records}
    assert all({"time", "level", "logger", "message"} <= set(record) for record in records)
    started_line = next(record for record in records if record["message"] == "analytics started")
    assert started_line["symbols"] == 1 and started_line["shard"] == "main"  # a count: 2,500 names make no log line
