"""The real `aoi` entry point, run as a subprocess the way people and CI run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

AOI_SCRIPT = Path(sys.executable).with_name("aoi")


def run_aoi(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    module: bool = False,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run `aoi ARGS` in `cwd` with no AOI_* variables but those in `env`."""
    clean = {key: value for key, value in os.environ.items() if not key.upper().startswith("AOI_")}
    command = [sys.executable, "-m", "aoi"] if module else [str(AOI_SCRIPT)]
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_one_clean_error(result: subprocess.CompletedProcess[str], *, code: int) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]
