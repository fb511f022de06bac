import pytest
from pydantic import ValidationError

from tradetape.api.methods.coverage import CoverageRequest
from tradetape.api.methods.volume_profile import VolumeProfileRequest
from tradetape.api.models import parse_duration_ms, parse_time_ms
from tradetape.api.registry import api_schema


def test_durations() -> None:
    assert parse_duration_ms("15m") == 900_000
    assert parse_duration_ms("24h") == 86_400_000
    assert parse_duration_ms("1.5h") == 5_400_000
    with pytest.raises(ValueError):
        parse_duration_ms("1 fortnight")


def test_times_accept_epoch_ms_and_iso() -> None:
    assert parse_time_ms(1_767_225_600_000) == 1_767_225_600_000
    assert parse_time_ms("2026-01-01T00:00:00Z") == 1_767_225_600_000
    assert parse_time_ms("2026-01-01T01:00:00+01:00") == 1_767_225_600_000
    assert parse_time_ms("2026-01-01 00:00:00") == 1_767_225_600_000


def test_default_ranges() -> None:
    now = 1_767_225_600_000
    assert VolumeProfileRequest().time_range(now) == (now - 3_600_000, now)
    assert VolumeProfileRequest(last="15m").time_range(now) == (now - 900_000, now)
    assert CoverageRequest().time_range(now, default_ms=None) is None
    assert CoverageRequest(start=now - 5).time_range(now, default_ms=None) == (now - 5, now)


@pytest.mark.parametrize(
    "body",
    [
        '{"last": "1h", "start": 1}',
        '{"start": 1767225600000, "end": 1767225600000}',
        '{"start": 1767225600000000}',
        '{"end": 1767225600}',
        '{"start": true}',
        '{"start": "²"}',
        '{"row_size": "-1"}',
        '{"row_size": "1e3"}',
        '{"rows": 0}',
        '{"value_area": 1.5}',
        '{"bogus": 1}',
        '{"last": "soon"}',
        '{"start": "yesterday"}',
    ],
)
def test_invalid_requests_are_rejected(body: str) -> None:
    with pytest.raises(ValidationError):
        VolumeProfileRequest.model_validate_json(body)


def test_row_size_accepts_numbers_and_strings() -> None:
    assert VolumeProfileRequest.model_validate_json('{"row_size": "10"}').row_size_units() == 1_000_000_000
    assert VolumeProfileRequest.model_validate_json('{"row_size": 0.5}').row_size_units() == 50_000_000


def test_schema_names_every_method() -> None:
    schema = api_schema()
    assert set(schema["methods"]) == {
        "volume_profile", "liquidity_vacuums", "coverage", "vwap", "bars", "flow", "large_trades", "trades",
        "footprint", "market_profile",
    }
    assert "row_size" in schema["methods"]["volume_profile"]["request"]["properties"]


NOW = 1_767_225_600_000


def test_end_alone_is_the_hour_before_it_and_start_alone_runs_to_now() -> None:
    """`--end` alone used to mean "from 1970": range_too_large, 20,793 days."""
    end = NOW - 86_400_000
    assert VolumeProfileRequest(end=end).time_range(NOW) == (end - 3_600_000, end)
    assert VolumeProfileRequest(start=end).time_range(NOW) == (end, NOW)
    assert CoverageRequest(end=end).time_range(NOW, default_ms=None) == (0, end)  # coverage: the tape up to end


@pytest.mark.parametrize(
    ("value", "says", "never"),
    [
        ("2010-01-01", "before 2017-01-01, Binance's first trade", "microseconds"),
        (1_262_304_000_000, "before 2017-01-01, Binance's first trade", "seconds"),
        (1_767_225_600, "epoch seconds", "microseconds"),
        ("1767225600", "epoch seconds", "microseconds"),
        (1_767_225_600_000_000, "microseconds", "epoch seconds"),
        ("2200-01-01", "after 2100-01-01", "microseconds"),
    ],
)
def test_times_out_of_range_say_what_they_are(value: int | str, says: str, never: str) -> None:
    """`2010-01-01` used to be called "not epoch milliseconds (microseconds or seconds?)"."""
    with pytest.raises(ValueError) as refused:
        parse_time_ms(value)
    assert says in str(refused.value) and never not in str(refused.value)


def test_a_negative_duration_says_it_counts_back_from_now() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        parse_duration_ms("-1h")
    with pytest.raises(ValidationError, match="must be positive; last counts back from now"):
        VolumeProfileRequest(last="-1h")


def test_row_size_and_rows_together_are_refused_naming_both() -> None:
    """`--row-size 10 --rows 5` used to drop `--rows` silently."""
    with pytest.raises(ValidationError, match="row_size or rows, not both"):
        VolumeProfileRequest(row_size="10", rows=5)
    assert VolumeProfileRequest(rows=5).rows == 5 and VolumeProfileRequest(row_size="10").row_size == "10"
