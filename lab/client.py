"""Talk to a running lab from another process (CLI commands, benchmark, investigations)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from lab.errors import LabError, LabNotRunningError
from lab.service import STATE_FILE, LabState


class LabClient:
    def __init__(self, state: LabState) -> None:
        self.state = state

    @classmethod
    def connect(cls, state_dir: Path) -> LabClient:
        state = LabState.read(state_dir)
        if state is None or not state.alive:
            raise LabNotRunningError(
                f"no lab is running for {state_dir}; start one with `aoi lab up --detach`."
            )
        return cls(state)

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 120.0
    ) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.state.control_url}{path}",
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.state.token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                result: dict[str, Any] = json.loads(resp.read())
                return result
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", exc.reason)
            except ValueError:
                message = exc.reason
            raise LabError(str(message)) from None
        except (urllib.error.URLError, OSError) as exc:
            raise LabNotRunningError(
                f"the lab at {self.state.control_url} does not answer: {exc}"
            ) from None

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/status")

    def inject(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/inject", body)

    def recover(
        self,
        *,
        app: str | None = None,
        settle_s: float | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Undo the active faults (of ``app`` only, when given) and wait as ``Lab.recover``
        does; returns its ``Recovery`` as a dict (recovered, seconds, quiet, detail)."""
        body: dict[str, Any] = {}
        if app is not None:
            body["app"] = app
        if settle_s is not None:
            body["settle_s"] = settle_s
        if timeout_s is not None:
            body["timeout_s"] = timeout_s
        # The lab answers within timeout_s (120 s by default) plus the undoing itself.
        wait = (timeout_s if timeout_s is not None else 120.0) + 60.0
        return self._call("POST", "/recover", body, timeout=wait)

    def check(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/check", body)

    def shutdown(self, *, timeout_s: float = 30.0) -> None:
        try:
            self._call("POST", "/shutdown", {}, timeout=5)
        except LabError:
            os.kill(self.state.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while self.state.alive and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.state.alive:
            os.kill(self.state.pid, signal.SIGKILL)


def start_detached(argv: list[str], state_dir: Path, *, timeout_s: float = 180.0) -> LabState:
    """Run `aoi lab up` (foreground) in its own session and wait for its state file."""
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    log = (state_dir / "lab.log").open("ab")
    # -P: a `lab/` folder in the working directory must not shadow the package.
    proc = subprocess.Popen(
        [sys.executable, "-P", *argv],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = LabState.read(state_dir)
        if state is not None and state.pid == proc.pid:
            return state
        if proc.poll() is not None:
            tail = (state_dir / "lab.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise LabError(f"the lab exited during start: {' | '.join(tail)}")
        time.sleep(0.2)
    proc.terminate()
    raise LabError(
        f"the lab did not become ready within {timeout_s:.0f}s; see {state_dir / 'lab.log'}"
    )
