"""data.binance.vision's dump layout: paths, names, checksum lines, the timestamp unit."""

from datetime import date

import pytest

from tradetape.binance.dumps import (
    DAILY,
    MONTHLY,
    checksum_line,
    dump_name,
    dump_path,
    is_dump_name,
    period_label,
    timestamp_unit,
)

SHA = "AB" * 32


def test_paths_and_names_are_binances() -> None:
    assert period_label(DAILY, date(2026, 1, 2)) == "2026-01-02"
    assert period_label(MONTHLY, date(2026, 1, 1)) == "2026-01"
    assert dump_name("BTCUSDT", "2026-01-02") == "BTCUSDT-aggTrades-2026-01-02.zip"
    path = dump_path(MONTHLY, "ETHUSDT", "2026-01")
    assert path == "data/spot/monthly/aggTrades/ETHUSDT/ETHUSDT-aggTrades-2026-01.zip"
    assert is_dump_name("BTCUSDT-aggTrades-2026-01-02.csv") and not is_dump_name("BTCUSDT-week.parquet")


@pytest.mark.parametrize("separator", ["  ", " *", " "])
def test_a_checksum_line_gives_the_digest_and_the_name(separator: str) -> None:
    assert checksum_line(f"{SHA}{separator}BTCUSDT-aggTrades-2026-01-02.zip\n") == (
        SHA.lower(),
        "BTCUSDT-aggTrades-2026-01-02.zip",
    )


@pytest.mark.parametrize(
    "text",
    ["", SHA, f"{SHA[:-1]}  a.zip", f"{SHA}  a.zip\n{SHA}  b.zip", f"{SHA}  a b.zip", "<html>404</html>"],
)
def test_anything_else_is_no_checksum_line(text: str) -> None:
    assert checksum_line(text) is None


def test_the_timestamp_unit_is_read_from_its_size() -> None:
    assert timestamp_unit(1_767_225_600_039) == "ms"
    assert timestamp_unit(1_767_225_600_039_123) == "us"
