"""Recording benchmark results: a JSON file per benchmark and a dated line in the README."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
README = BENCH_DIR / "README.md"
MARKER = "<!-- results: newest last -->"


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def record(name: str, results: dict[str, Any], summary: str) -> Path:
    """Write ``results/<name>.json`` and add ``summary`` as a dated line to bench/README.md."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    path = RESULTS_DIR / f"{name}.json"
    payload = {"benchmark": name, "recorded_at": stamp, "machine": machine(), "results": results}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    text = README.read_text() if README.exists() else f"# Benchmarks\n\n{MARKER}\n"
    if MARKER not in text:
        text += f"\n{MARKER}\n"
    README.write_text(text.rstrip("\n") + f"\n- {stamp} `{name}`: {summary}\n")
    return path
