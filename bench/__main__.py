"""Runs every `bench/bench_*.py` module's `main()` in turn, by file name.

New benchmarks need no registration: drop a `bench_<name>.py` with a `main()`
next to this file. `python -m bench NAME...` runs only the named ones (with or
without the `bench_` prefix). One failing benchmark does not stop the others;
the exit code says whether any failed.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

PREFIX = "bench_"


def discover() -> list[str]:
    """Module names of every benchmark, alphabetically."""
    folder = str(Path(__file__).resolve().parent)
    return sorted(
        info.name for info in pkgutil.iter_modules([folder]) if info.name.startswith(PREFIX)
    )


def _selected(names: list[str], wanted: list[str]) -> list[str]:
    if not wanted:
        return names
    wanted_full = {name if name.startswith(PREFIX) else PREFIX + name for name in wanted}
    unknown = wanted_full - set(names)
    if unknown:
        raise SystemExit(f"error: no such benchmark(s): {', '.join(sorted(unknown))}")
    return [name for name in names if name in wanted_full]


def run(names: list[str]) -> int:
    """Run the benchmarks; returns how many failed."""
    failed = 0
    for name in names:
        print(f"== {name}", flush=True)
        started = time.monotonic()
        try:
            entry: Callable[[], object] = importlib.import_module(f"bench.{name}").main
            entry()
        except Exception:
            failed += 1
            traceback.print_exc()
        print(f"== {name} took {time.monotonic() - started:.1f} s", flush=True)
    return failed


def main(argv: list[str]) -> int:
    names = _selected(discover(), argv)
    return 1 if run(names) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
