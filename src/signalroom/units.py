"""Durations and byte sizes written the way Prometheus configuration writes them."""

from __future__ import annotations

import re

_DURATION_UNITS_MS = {
    "y": 365 * 24 * 3600 * 1000,
    "w": 7 * 24 * 3600 * 1000,
    "d": 24 * 3600 * 1000,
    "h": 3600 * 1000,
    "m": 60 * 1000,
    "s": 1000,
    "ms": 1,
}
# Units must appear largest first, each at most once, as in Prometheus' model.ParseDuration.
_DURATION_RE = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)

_BYTE_UNITS = {
    "B": 1,
    "KB": 1024,
    "MB": 1024**2,
    "GB": 1024**3,
    "TB": 1024**4,
    "PB": 1024**5,
    "KIB": 1024,
    "MIB": 1024**2,
    "GIB": 1024**3,
    "TIB": 1024**4,
    "PIB": 1024**5,
}
_BYTES_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$")


def parse_duration_ms(text: str) -> int:
    """Parse a Prometheus duration such as ``1h30m`` or ``15s`` into milliseconds.

    A bare ``0`` is accepted, as Prometheus does. Anything else raises ``ValueError``
    with a message that shows the expected form.
    """
    text = text.strip()
    if text == "0":
        return 0
    match = _DURATION_RE.match(text)
    if not text or match is None:
        raise ValueError(
            f"not a valid duration string: {text!r} (use forms like 30s, 5m, 1h30m, 7d)"
        )
    total = 0
    for amount, unit in zip(match.groups(), _DURATION_UNITS_MS.values(), strict=True):
        if amount is not None:
            total += int(amount) * unit
    return total


def parse_duration_s(text: str) -> float:
    """Parse a Prometheus duration into seconds."""
    return parse_duration_ms(text) / 1000.0


def format_duration_ms(ms: int) -> str:
    """Format milliseconds as Prometheus prints durations (``1h30m``, ``0s``)."""
    if ms == 0:
        return "0s"
    parts = []
    remaining = ms
    for unit, size in _DURATION_UNITS_MS.items():
        if remaining >= size:
            count, remaining = divmod(remaining, size)
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parse_bytes(text: str | int) -> int:
    """Parse a size such as ``512MB`` or ``2GiB`` (base 1024, as Prometheus' retention.size)."""
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"size must not be negative: {text}")
        return text
    match = _BYTES_RE.match(text.strip())
    unit = match.group(2).upper() if match else ""
    if match is None or (unit and unit not in _BYTE_UNITS):
        raise ValueError(f"not a valid size: {text!r} (use forms like 512MB, 10GB, 1TiB)")
    return int(float(match.group(1)) * _BYTE_UNITS[unit or "B"])
