"""The tests' lab: ``lab.benchmark.harness.LabThread`` on the shared build cache.

Tests build their labs exactly as the benchmark does; only the cache folder
(``AOI_CACHE_DIR``, default ``~/.cache/aoi``) is chosen here.
"""

from __future__ import annotations

import os
from pathlib import Path

from lab.benchmark.harness import LabThread as _LabThread

CACHE_DIR = Path(os.environ.get("AOI_CACHE_DIR", Path.home() / ".cache" / "aoi"))


class LabThread(_LabThread):
    def __init__(self, state_dir: Path, *, tick_s: float = 0.5) -> None:
        super().__init__(state_dir, cache_dir=CACHE_DIR, tick_s=tick_s)
