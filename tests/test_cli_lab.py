"""`aoi lab ...` through the real console script: a detached lab, its state file, bad input."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# -P: never import a folder of the working directory (the lab state has a `lab/pki`).
AOI = [sys.executable, "-P", "-m", "aoi"]


def _env(state_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AOI_")}
    env["AOI_LAB_STATE_DIR"] = str(state_dir)
    env["AOI_CACHE_DIR"] = os.environ.get("AOI_CACHE_DIR", str(Path.home() / ".cache" / "aoi"))
    env.update(extra)
    return env


def aoi(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AOI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture(scope="module")
def running_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Path]]:
    cwd = tmp_path_factory.mktemp("cli-lab")
    env = _env(cwd / "state")
    started = aoi(["lab", "up", "--detach"], env, cwd, timeout=240)
    assert started.returncode == 0, started.stderr + started.stdout
    try:
        yield env, cwd
    finally:
        aoi(["lab", "down"], env, cwd, timeout=60)


def test_scenarios_json_lists_the_catalogue(tmp_path: Path) -> None:
    result = aoi(["lab", "scenarios", "--json"], _env(tmp_path / "state"), tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    ids = {row["id"] for row in rows}
    assert len([r for r in rows if r["source"] == "aiopslab"]) == 86
    assert {"k8s_target_port-misconfig-mitigation-1", "container_kill-detection"} <= ids
    assert {"id", "task_type", "app", "fault", "split"} <= set(rows[0])


def test_user_scenarios_dir_adds_scenarios(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "drill.yaml").write_text(
        "id: our-geo-outage\ntask_type: localization\napp: hotel-reservation\n"
        "faults:\n  - family: scale_to_zero\n    target: geo\n"
    )
    result = aoi(
        ["lab", "scenarios", "--json", "--scenarios-dir", str(folder)],
        _env(tmp_path / "state"),
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "our-geo-outage" in {row["id"] for row in json.loads(result.stdout)}


def test_malformed_user_scenario_names_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "bad.yaml").write_text(
        "id: bad-one\ntask_type: localization\napp: hotel-reservation\n"
        "faults:\n  - family: no_such_family\n    target: geo\n"
    )
    result = aoi(
        ["lab", "scenarios", "--scenarios-dir", str(folder)], _env(tmp_path / "state"), tmp_path
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "bad.yaml:5" in result.stderr
    assert "no_such_family" in result.stderr


def test_unknown_scenario_is_a_clear_error(tmp_path: Path) -> None:
    result = aoi(
        ["lab", "inject", "k8s_target_port-misconfig-mitigaton-1"],
        _env(tmp_path / "state"),
        tmp_path,
    )
    line = _one_error_line(result)
    assert "k8s_target_port-misconfig-mitigation-1" in line


def test_commands_without_a_lab_say_how_to_start_one(tmp_path: Path) -> None:
    line = _one_error_line(aoi(["lab", "status"], _env(tmp_path / "state"), tmp_path))
    assert "aoi lab up" in line


def test_missing_binaries_say_how_to_build_them(tmp_path: Path) -> None:
    env = _env(tmp_path / "state", AOI_CACHE_DIR=str(tmp_path / "empty-cache"))
    line = _one_error_line(aoi(["lab", "up"], env, tmp_path))
    assert "make control-plane" in line
    assert "kube-apiserver" in line


def test_a_port_in_use_is_named(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        line = _one_error_line(
            aoi(["lab", "up", "--api-port", str(port)], _env(tmp_path / "state"), tmp_path)
        )
    assert f"port {port}" in line
    assert "in use" in line


def test_detached_lab_lifecycle(running_lab: tuple[dict[str, str], Path]) -> None:
    env, cwd = running_lab
    second = aoi(["lab", "up", "--detach"], env, cwd)
    assert "already running" in _one_error_line(second)

    status = json.loads(aoi(["lab", "status", "--json"], env, cwd).stdout)
    assert len(status["services"]) > 60
    assert status["active_faults"] == []

    scenario = "k8s_target_port-misconfig-mitigation-1"
    injected = aoi(["lab", "inject", scenario, "--json"], env, cwd)
    assert injected.returncode == 0, injected.stderr
    check = json.loads(aoi(["lab", "check", scenario, "--json"], env, cwd).stdout)
    assert check["mitigated"] is False

    adhoc = aoi(["lab", "inject", "--fault", "scale_to_zero", "--target", "geo"], env, cwd)
    assert adhoc.returncode == 0, adhoc.stderr
    status = json.loads(aoi(["lab", "status", "--json"], env, cwd).stdout)
    assert {f["family"] for f in status["active_faults"]} == {
        "target_port_misconfig",
        "scale_to_zero",
    }

    # A short quiet wait keeps the test quick; the default waits for the agents' 1m window.
    recovered = aoi(["lab", "recover", "--window", "3s", "--timeout", "60", "--json"], env, cwd)
    assert recovered.returncode == 0, recovered.stderr
    result = json.loads(recovered.stdout)
    assert result["recovered"] == 2
    assert result["quiet"] is True, result["detail"]
    assert result["seconds"] >= 3
    deadline = time.monotonic() + 30
    while True:
        check = json.loads(aoi(["lab", "check", scenario, "--json"], env, cwd).stdout)
        if check["mitigated"] or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert check["mitigated"] is True, check["detail"]


def test_down_stops_the_lab_and_removes_its_state(tmp_path: Path) -> None:
    env = _env(tmp_path / "state")
    assert aoi(["lab", "up", "--detach"], env, tmp_path, timeout=240).returncode == 0
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    down = aoi(["lab", "down"], env, tmp_path, timeout=60)
    assert down.returncode == 0, down.stderr
    assert not (tmp_path / "state" / "state.json").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(state["pid"], 0)
