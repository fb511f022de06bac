"""Reading dumps: the real BTCUSDT file, ms and µs, headers, zips, and every kind of bad input named by line."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradetape.binance.aggtrade import TradeFormatError, parse_trade
from tradetape.domain.column_checks import decimal_units
from tradetape.domain.decimals import DecimalFormatError, parse_units
from tradetape.history.dumps import DumpError, read_dump

REAL = Path(__file__).parent / "data" / "BTCUSDT-aggTrades-2026-01-01.head5000.csv"
REAL_LINES = REAL.read_text().splitlines()


def write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_the_real_file_reads_exactly_as_parse_trade_reads_each_row() -> None:
    dump = read_dump(REAL)
    assert (dump.symbol, dump.time_unit, len(dump.trades)) == ("BTCUSDT", "us", 5000)
    for index in (0, 1, 2499, 4999):
        a, p, q, f, last, t, m, _ = REAL_LINES[index].split(",")
        obj = {"a": int(a), "p": p, "q": q, "f": int(f), "l": int(last), "T": int(t) // 1000, "m": m == "True"}
        assert tuple(int(c[index]) for c in dump.trades.arrays()) == tuple(int(v) for v in parse_trade(obj)[:7])
    assert dump.lines[0] == 1 and dump.lines[-1] == 5000
    assert int(dump.trades.qty.sum()) == 7_974_436_000  # 79.74436 BTC, as the README's coverage example


def test_ms_timestamps_a_header_and_a_zip_give_the_same_trades(tmp_path: Path) -> None:
    rows = [line.split(",") for line in REAL_LINES[:300]]
    ms_lines = [",".join([*r[:5], str(int(r[5]) // 1000), *r[6:]]) for r in rows]
    header = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker,is_best_match"
    csv_path = write(tmp_path, "BTCUSDT-aggTrades-2026-01-01.csv", [header, *ms_lines])
    zip_path = tmp_path / "BTCUSDT-aggTrades-2026-01-01.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("BTCUSDT-aggTrades-2026-01-01.csv", "\n".join(REAL_LINES[:300]) + "\n")
    from_csv, from_zip = read_dump(csv_path), read_dump(zip_path)
    assert (from_csv.time_unit, from_zip.time_unit) == ("ms", "us")
    assert from_csv.lines[0] == 2
    for a, b in zip(from_csv.trades.arrays(), from_zip.trades.arrays(), strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("3800397697,87648.2x,0.1,1,1,1767225600039409,True,True", "price is not a plain decimal"),
        ("3800397697,87648.2,0.123456789,1,1,1767225600039409,True,True", "quantity is not a plain decimal"),
        ("3800397697,87648.2,1²,1,1,1767225600039409,True,True", "quantity is not a plain decimal"),
        ("3800397697,0,0.1,1,1,1767225600039409,True,True", "price must be positive"),
        ("3800397697,87648.2,0.00000000,1,1,1767225600039409,True,True", "quantity must be positive"),
        ("3800397697,87648.2,0.1,5,4,1767225600039409,True,True", "last trade id is below first"),
        ("3800397697,87648.2,0.1,1,1,1767225600039,True,True", "time is not between 2017"),
        ("3800397697,87648.2,0.1,1,1,1767225600039409,maybe,True", "buyer-maker is not a boolean"),
        ("38003976x7,87648.2,0.1,1,1,1767225600039409,True,True", "agg id is not an integer"),
        ("3800397697,87648.2,0.1,1,1", "missing fields"),
        ("3800397697,87648.2,0.1,1,1,1767225600039409,True,True,extra,more", "comma-separated fields"),
        ("3800397000,87648.2,0.1,1,1,1767225600039409,True,True", "does not ascend"),
    ],
)
def test_a_malformed_row_is_an_error_naming_the_file_and_its_line(tmp_path: Path, row: str, reason: str) -> None:
    path = write(tmp_path, "BTCUSDT-aggTrades-2026-01-01.csv", [*REAL_LINES[:201], row, *REAL_LINES[201:300]])
    with pytest.raises(DumpError) as caught:
        read_dump(path)
    assert caught.value.line == 202 and caught.value.source == path.name
    assert reason in str(caught.value) and "line 202" in str(caught.value)


def test_a_truncated_zip_a_file_of_another_symbol_and_an_empty_file_are_refused(tmp_path: Path) -> None:
    zip_path = tmp_path / "BTCUSDT-aggTrades-2026-01-01.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("BTCUSDT-aggTrades-2026-01-01.csv", "\n".join(REAL_LINES) + "\n")
    data = zip_path.read_bytes()
    zip_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DumpError, match="truncated or corrupt"):
        read_dump(zip_path)
    other = write(tmp_path, "ETHUSDT-aggTrades-2026-01-01.csv", REAL_LINES[:10])
    with pytest.raises(DumpError, match="holds ETHUSDT trades, not BTCUSDT"):
        read_dump(other, "BTCUSDT")
    with pytest.raises(DumpError, match="cannot tell the symbol"):
        read_dump(write(tmp_path, "trades.csv", REAL_LINES[:10]))
    with pytest.raises(DumpError, match="holds no trades"):
        read_dump(write(tmp_path, "BTCUSDT-aggTrades-2026-01-02.csv", []))


@pytest.mark.slow
def test_rows_split_across_read_chunks_keep_their_line_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tradetape.history.dump_rows.CHUNK_BYTES", 1000)
    lines = list(REAL_LINES[:400])
    lines[333] = lines[333].replace("True,True", "Tru,True").replace("False,True", "Fals,True")
    with pytest.raises(DumpError) as caught:
        read_dump(write(tmp_path, "BTCUSDT-aggTrades-2026-01-01.csv", lines))
    assert caught.value.line == 334
    assert len(read_dump(write(tmp_path, "BTCUSDT-aggTrades-2026-01-02.csv", REAL_LINES[:400])).trades) == 400


@given(st.lists(st.text(alphabet="0123456789.+-e ²", max_size=24), min_size=1, max_size=40))
def test_decimal_columns_accept_exactly_what_parse_units_accepts(texts: list[str]) -> None:
    units, ok = decimal_units(pl.Series(texts, dtype=pl.String))
    for text, value, valid in zip(texts, units.tolist(), ok.tolist(), strict=True):
        try:
            expected: int | None = parse_units(text)
        except (DecimalFormatError, TradeFormatError):
            expected = None
        if expected is not None and len(text.lstrip("0")) > 20:
            continue  # more leading zeros than uint64 holds: refused here, a case no exchange writes
        assert (value if valid else None) == expected, text


def test_line_map_keeps_each_trades_line_across_headers_and_blank_lines() -> None:
    from tradetape.history.dump_rows import LineMap

    lines = LineMap()
    lines.extend(np.array([2, 3, 4, 6, 7]))  # a header on line 1, a blank line 5
    lines.extend(np.array([8, 10]))  # the next chunk, a blank line 9
    assert [lines[i] for i in range(7)] == [2, 3, 4, 6, 7, 8, 10] and lines[-1] == 10
    with pytest.raises(IndexError):
        lines[7]
