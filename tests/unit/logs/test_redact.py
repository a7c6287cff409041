"""PII redaction: what is replaced, what is left alone, and the counts."""

from __future__ import annotations

import pyarrow as pa
import pytest

from signalroom.logs.config import RedactionConfig, RedactionPattern
from signalroom.logs.redact import Redactor, iban_valid, luhn_valid

pytestmark = pytest.mark.unit


def redact(text: str, config: RedactionConfig | None = None) -> tuple[str, dict[str, int]]:
    lines, counts = Redactor(config or RedactionConfig()).redact(pa.array([text]))
    return lines[0].as_py(), counts


def test_luhn_and_iban_checksums() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert iban_valid("DE89 3704 0044 0532 0130 00")
    assert iban_valid("GB82WEST12345698765432")
    assert not iban_valid("DE89 3704 0044 0532 0130 01")


def test_card_numbers_redacted_only_when_luhn_valid() -> None:
    text, counts = redact("paid with 4111 1111 1111 1111 and 4111-1111-1111-1112")
    assert text == "paid with [REDACTED:card] and 4111-1111-1111-1112"
    assert counts == {"card": 1}


def test_iban_redacted_only_with_valid_checksum() -> None:
    text, counts = redact("to DE89 3704 0044 0532 0130 00 not DE89370400440532013001")
    assert text == "to [REDACTED:iban] not DE89370400440532013001"
    assert counts == {"iban": 1}


def test_email_phone_jwt_bearer_api_key() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl"
    text, counts = redact(
        f"user alice.smith+x@mail.example.org phone +49 30 1234567 token {jwt} "
        "Authorization: Bearer abcdefghijklmnop key sk_live_abcdefghijklmnop"
    )
    assert "alice" not in text and "[REDACTED:email]" in text
    assert "1234567" not in text and "[REDACTED:phone]" in text
    assert jwt not in text and "[REDACTED:jwt]" in text
    assert "Bearer [REDACTED:token]" in text
    assert "sk_live" not in text
    assert counts == {"email": 1, "phone": 1, "jwt": 1, "bearer": 1, "api_key": 1}


def test_field_names_and_custom_patterns() -> None:
    config = RedactionConfig(patterns=[RedactionPattern(name="customer", regex=r"CUST-\d{6}")])
    text, counts = redact('{"user":"bob","password":"hunter2"} secret=abc CUST-123456', config)
    assert text == '{"user":"bob","password":"[REDACTED]"} secret=[REDACTED] [REDACTED:customer]'
    assert counts == {"field": 2, "customer": 1}


def test_clean_lines_and_timestamps_untouched() -> None:
    line = "GET /api/orders/1234 200 took 15ms at 1700000000123456789 version 1.2.3"
    assert redact(line) == (line, {})


def test_disabled() -> None:
    text, counts = redact("bob@example.com", RedactionConfig(enabled=False))
    assert text == "bob@example.com" and counts == {}
