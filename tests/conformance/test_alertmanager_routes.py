"""Alertmanager routing conformance: 463 label sets answered by the real
``amtool config routes test`` (Alertmanager 0.25) must route to the same receivers, in order.

The cases live in ``../shared/conformance/alertmanager/`` next to the repository.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from signalroom.alerting.routes_test import routes_test

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]
CASES_DIR = REPO_ROOT.parent / "shared" / "conformance" / "alertmanager"
CASES_FILE = CASES_DIR / "routes.jsonl"


def _load_cases() -> list[dict[str, Any]]:
    if not CASES_FILE.exists():
        return []
    with CASES_FILE.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


CASES = _load_cases()


def _case_id(case: dict[str, Any]) -> str:
    labels = ",".join(f"{k}={v}" for k, v in case["labels"].items())
    return f"{case['config']}:{labels}"


def test_case_file_is_present_and_complete() -> None:
    assert CASES_FILE.exists(), f"missing {CASES_FILE}"
    assert len(CASES) == 463


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_same_receivers_in_same_order(case: dict[str, Any]) -> None:
    config = CASES_DIR / case["config"]
    # amtool takes labels as name="value" arguments: go through that parsing path too
    args = [f'{name}="{value}"' for name, value in case["labels"].items()]
    output, code = routes_test(config, args)
    assert code == 0
    assert output == ",".join(case["receivers"]) + "\n"
    verified, code = routes_test(config, case["labels"], verify_receivers=output.strip())
    assert (verified, code) == (output, 0)
