import pytest

from tradetape.domain.decimals import DecimalFormatError, format_units, parse_units


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("87648.21000000", 8764821000000),
        ("0.00013000", 13000),
        ("10", 1_000_000_000),
        ("0.5", 50_000_000),
        ("1.", 100_000_000),
        ("0.00000001", 1),
        ("0", 0),
        ("5.123456780", 512345678),
        ("92233720368.54775807", 2**63 - 1),
    ],
)
def test_parse_units_is_exact(text: str, units: int) -> None:
    assert parse_units(text) == units


@pytest.mark.parametrize(
    "text", ["-1", "1e5", "abc", "", ".5", "1.123456789", "1,5", " 1", "nan", "²", "1.²", "٣", "92233720368.54775808"]
)
def test_parse_units_rejects(text: str) -> None:
    with pytest.raises(DecimalFormatError):
        parse_units(text)


@pytest.mark.parametrize(
    ("units", "text"),
    [
        (8764821000000, "87648.21"),
        (13000, "0.00013"),
        (1_000_000_000, "10"),
        (1, "0.00000001"),
        (0, "0"),
        (-150_000_000, "-1.5"),
    ],
)
def test_format_units(units: int, text: str) -> None:
    assert format_units(units) == text
