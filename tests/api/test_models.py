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
        "volume_profile", "liquidity_vacuums", "coverage", "vwap", "bars", "flow", "large_trades", "trades"
    }
    assert "row_size" in schema["methods"]["volume_profile"]["request"]["properties"]
