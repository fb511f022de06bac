import numpy as np
import pytest

from tradetape.domain.columns import TradeColumns
from tradetape.domain.trade import TradeRow
from tradetape.store.codec import WindowFormatError, decode_window, encode_window, merge_windows


def rows(*ids: int, time: int = 1_000) -> list[TradeRow]:
    return [TradeRow(i, 100_00000000 + i, 1_000 * i, 10 * i, 10 * i + 1, time + i, i % 2 == 0) for i in ids]


def test_from_rows_sorts_and_dedupes_by_agg_id() -> None:
    columns = TradeColumns.from_rows(rows(5, 3, 4, 3))
    assert columns.agg_id.tolist() == [3, 4, 5]
    assert columns.buyer_maker.tolist() == [False, True, False]


def test_window_value_round_trips() -> None:
    columns = TradeColumns.from_rows(rows(1, 2, 3))
    decoded = decode_window(encode_window(columns))
    for name in ("agg_id", "price", "qty", "first_id", "last_id", "time", "buyer_maker"):
        assert np.array_equal(getattr(decoded, name), getattr(columns, name))


def test_merge_keeps_each_agg_id_once() -> None:
    stored = TradeColumns.from_rows(rows(1, 2, 3))
    merged = merge_windows(stored, TradeColumns.from_rows(rows(2, 3, 4, 0)))
    assert merged.agg_id.tolist() == [0, 1, 2, 3, 4]
    assert merge_windows(None, TradeColumns.from_rows(rows(7))).agg_id.tolist() == [7]


def test_between_is_half_open() -> None:
    columns = TradeColumns.from_rows(rows(0, 1, 2, 3, time=1_000))
    assert columns.between(1_001, 1_003).agg_id.tolist() == [1, 2]


def test_unreadable_value_is_a_specific_error() -> None:
    with pytest.raises(WindowFormatError):
        decode_window(b"\x81\xa1v\x63")
