"""Run every benchmark (``make bench``) or the ones named: ``python -m bench wal segments``.

Names come first; everything from the first option on (``--series 1000000``) goes to each
benchmark run."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(BENCH_DIR.glob("bench_*.py"))
    available = {s.stem.removeprefix("bench_") for s in scripts}
    first_option = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    names, passed = argv[:first_option], argv[first_option:]
    unknown = [a for a in names if a not in available]
    if unknown:
        print(f"unknown benchmarks {unknown}; available: {', '.join(sorted(available))}")
        return 2
    if names:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in names]
    for script in scripts:
        print(f"== {script.stem}", flush=True)
        sys.argv = [str(script), *passed]
        runpy.run_path(str(script), run_name="__main__")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
