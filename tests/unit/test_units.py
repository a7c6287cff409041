import pytest

from signalroom.units import format_duration_ms, parse_bytes, parse_duration_ms

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("0", 0),
        ("15s", 15_000),
        ("1h30m", 5_400_000),
        ("7d", 604_800_000),
        ("1w", 604_800_000),
        ("1y", 31_536_000_000),
        ("250ms", 250),
        ("1m30s500ms", 90_500),
        ("2d12h", 216_000_000),
    ],
)
def test_parse_duration(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "1", "5x", "1m1h", "-5s", "1.5h", "s", "1h 30m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration_ms(text)


@pytest.mark.parametrize("ms", [0, 1, 999, 15_000, 5_400_000, 90_061_001, 31_536_000_000 + 60_000])
def test_format_roundtrip(ms: int) -> None:
    assert parse_duration_ms(format_duration_ms(ms)) == ms


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512MB", 512 * 1024**2),
        ("1GiB", 1024**3),
        ("10gb", 10 * 1024**3),
        ("100", 100),
        (7, 7),
        ("1.5KB", 1536),
        ("0B", 0),
    ],
)
def test_parse_bytes(text: str | int, size: int) -> None:
    assert parse_bytes(text) == size


@pytest.mark.parametrize("text", ["MB", "12 parsecs", "-1", "1XB"])
def test_parse_bytes_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_bytes(text)
