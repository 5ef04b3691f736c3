"""`aoi models list|use|rollback|show`, and which model the bot, console and doctor serve.

The commands run as the real `aoi` entry point (a subprocess, like people and CI
run it) against a SQLite store the test fills through `store.model_versions`.
Precedence is checked in process on `aoi.wiring.served_model`: a `--model`
option, else AOI_MODEL when it is set, else the active version, else the
embedded model; a version's file is verified before it is served.

Registration checks only the GGUF magic, so test files are b"GGUF" and a few
bytes; the one doctor test that loads a model registers the embedded GGUF itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from support.cli import assert_one_clean_error, run_aoi

from agents.llm import embedded_model_path
from aoi.commands.doctor import check_model
from aoi.errors import SettingsError
from aoi.settings import load_settings
from aoi.wiring import served_model
from store.db import make_engine
from store.migrate import upgrade
from store.model_versions import (
    ModelFileRefused,
    ModelVersionNotFound,
    history,
    register_version,
    use_version,
)
from store.models import ModelVersion
from store.training import finish_run, record_step, start_run


def gguf_file(folder: Path, name: str) -> Path:
    """A file registration accepts: the GGUF magic, then anything."""
    path = folder / f"{name}.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00" + name.encode() * 16)
    return path


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, sa.Engine]:
    url = f"sqlite:///{tmp_path}/aoi.db"
    engine = make_engine(url)
    upgrade(engine)
    return url, engine


def _register(engine: sa.Engine, folder: Path, name: str, **extra: object) -> ModelVersion:
    return register_version(
        engine,
        name=name,
        path=gguf_file(folder, name),
        base="SmolLM2-135M-Instruct",
        **extra,  # type: ignore[arg-type]
    )


def _models(tmp_path: Path, url: str, *args: str, **env: str):  # type: ignore[no-untyped-def]
    return run_aoi("models", *args, cwd=tmp_path, env={"AOI_DATABASE_URL": url, **env})


# --- the commands ----------------------------------------------------------------------------


def test_help_names_the_commands(tmp_path: Path) -> None:
    result = run_aoi("models", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for command in ("list", "use", "rollback", "show"):
        assert command in result.stdout


def test_use_list_rollback_show(tmp_path: Path, store: tuple[str, sa.Engine]) -> None:
    url, engine = store
    run_id = start_run(engine, base="SmolLM2", config={"steps": 2}, dataset={}, output_dir="o")
    record_step(engine, run_id, 1, {"reward": 0.25})
    record_step(engine, run_id, 2, {"reward": 0.5, "kl": 0.01})
    finish_run(engine, run_id, status="succeeded", summary={"reward": 0.5})
    a = _register(engine, tmp_path, "smollm2-a")
    b = _register(engine, tmp_path, "smollm2-b", run_id=run_id, metrics={"heldout_avg@1": 0.4})

    used = _models(tmp_path, url, "use", "smollm2-a", "--reason", "try it", USER="alice")
    assert used.returncode == 0, used.stderr
    assert "now serving smollm2-a" in used.stdout
    assert "restart a running bot" in used.stdout

    used = _models(tmp_path, url, "use", str(b.id), "--json", USER="bob")
    assert used.returncode == 0, used.stderr
    assert json.loads(used.stdout)["active"] == "smollm2-b"

    listed = json.loads(_models(tmp_path, url, "list", "--json").stdout)
    assert listed["active"] == "smollm2-b"
    assert listed["aoi_model"] is None
    assert listed["since"]["actor"] == "bob"
    rows = {row["name"]: row for row in listed["versions"]}
    assert list(rows) == ["embedded", "smollm2-a", "smollm2-b"]
    assert rows["embedded"]["built_in"] is True
    assert [row["active"] for row in rows.values()] == [False, False, True]
    assert rows["smollm2-b"]["metrics"] == {"heldout_avg@1": 0.4}
    assert rows["smollm2-a"]["size_bytes"] == Path(a.path).stat().st_size
    assert rows["smollm2-a"]["path"] == a.path

    rolled = _models(tmp_path, url, "rollback", "--json", USER="carol")
    assert rolled.returncode == 0, rolled.stderr
    assert json.loads(rolled.stdout)["active"] == "smollm2-a"

    shown = _models(tmp_path, url, "show", "smollm2-b", "--json")
    assert shown.returncode == 0, shown.stderr
    detail = json.loads(shown.stdout)
    assert detail["version"]["active"] is False
    assert detail["file"] == "present"
    assert detail["run"]["id"] == run_id
    assert detail["run"]["status"] == "succeeded"
    assert detail["run"]["summary"] == {"reward": 0.5}
    assert detail["last_step"] == {"step": 2, "metrics": {"reward": 0.5, "kl": 0.01}}

    text = _models(tmp_path, url, "show", "smollm2-b")
    assert text.returncode == 0, text.stderr
    assert "last step 2: reward=0.5, kl=0.01" in text.stdout
    assert [(row.actor, row.reason) for row in history(engine)] == [
        ("alice", "try it"),
        ("bob", ""),
        ("carol", "rollback"),
    ]


def test_list_says_when_aoi_model_wins(tmp_path: Path, store: tuple[str, sa.Engine]) -> None:
    url, engine = store
    _register(engine, tmp_path, "v1")
    use_version(engine, "v1", actor="alice")
    listed = _models(tmp_path, url, "list", AOI_MODEL="embedded")
    assert listed.returncode == 0, listed.stderr
    assert "served: v1 (since" in listed.stdout
    assert "note: AOI_MODEL=embedded is set" in listed.stdout


def test_errors_are_one_line_with_what_to_do(tmp_path: Path, store: tuple[str, sa.Engine]) -> None:
    url, engine = store
    line = assert_one_clean_error(_models(tmp_path, url, "rollback"), code=1)
    assert "nothing to roll back to" in line

    line = assert_one_clean_error(_models(tmp_path, url, "use", "nope"), code=1)
    assert "aoi models list" in line

    version = _register(engine, tmp_path, "v1")
    Path(version.path).write_bytes(b"GGUF and other bytes now")
    line = assert_one_clean_error(_models(tmp_path, url, "use", "v1"), code=1)
    assert "changed since it was registered" in line
    assert "aoi models rollback" in line

    line = assert_one_clean_error(
        _models(tmp_path, url, "use", "embedded", "--reason", "x" * 20_001), code=2
    )
    assert "reason" in line
    assert history(engine) == []


# --- what is served ------------------------------------------------------------------------


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No AOI_* variables from the caller and no ./.env: only what a test sets."""
    for name in list(os.environ):
        if name.upper().startswith("AOI_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_nothing_registered_serves_the_embedded_model_and_creates_nothing(
    environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    environment.setenv("AOI_DATABASE_URL", f"sqlite:///{tmp_path}/none/aoi.db")
    served = served_model(load_settings())
    assert (served.spec, served.source, served.version) == ("embedded", "default", None)
    assert served.describe() == ""
    assert not (tmp_path / "none").exists()
    environment.setenv("AOI_MODEL", "version:v1")
    with pytest.raises(ModelVersionNotFound, match="no model versions yet"):
        served_model(load_settings())


def test_precedence_option_then_aoi_model_then_active_version(
    environment: pytest.MonkeyPatch, tmp_path: Path, store: tuple[str, sa.Engine]
) -> None:
    url, engine = store
    environment.setenv("AOI_DATABASE_URL", url)
    a = _register(engine, tmp_path, "a")
    b = _register(engine, tmp_path, "b")
    assert served_model(load_settings()).source == "default"

    use_version(engine, "a", actor="alice")
    served = served_model(load_settings())
    assert (served.spec, served.source) == (a.path, "active")
    assert served.version is not None
    assert served.version.id == a.id
    assert served.describe() == f"version a (#{a.id}, activated with `aoi models use`)"

    environment.setenv("AOI_MODEL", "embedded")  # explicit, even at the default's value
    assert (served_model(load_settings()).spec, served_model(load_settings()).source) == (
        "embedded",
        "AOI_MODEL",
    )
    environment.setenv("AOI_MODEL", "version:b")
    served = served_model(load_settings())
    assert (served.spec, served.source) == (b.path, "AOI_MODEL")
    assert served.describe() == f"version b (#{b.id}, AOI_MODEL)"
    environment.setenv("AOI_MODEL", f"version:{a.id}")
    assert served_model(load_settings()).spec == a.path

    assert served_model(load_settings(), "analyzers").spec == "analyzers"  # --model wins
    assert served_model(load_settings(), "version:b").source == "--model"
    environment.setenv("AOI_MODEL", "version:zzz")
    with pytest.raises(ModelVersionNotFound, match="aoi models list"):
        served_model(load_settings())

    environment.delenv("AOI_MODEL")
    use_version(engine, "embedded", actor="alice")
    assert served_model(load_settings()).spec == "embedded"


def test_a_changed_active_file_is_refused_and_the_doctor_says_so(
    environment: pytest.MonkeyPatch, tmp_path: Path, store: tuple[str, sa.Engine]
) -> None:
    url, engine = store
    environment.setenv("AOI_DATABASE_URL", url)
    version = _register(engine, tmp_path, "a")
    use_version(engine, "a", actor="alice")
    Path(version.path).unlink()
    with pytest.raises(ModelFileRefused, match="is gone"):
        served_model(load_settings())
    check = check_model(load_settings())
    assert not check.ok
    assert "aoi models rollback" in check.detail


def test_aoi_model_accepts_versions_and_refuses_an_empty_one(
    environment: pytest.MonkeyPatch,
) -> None:
    environment.setenv("AOI_MODEL", "version:smollm2-grpo-3")
    assert load_settings().model_kind == "version"
    environment.setenv("AOI_MODEL", "version: ")
    with pytest.raises(SettingsError, match="AOI_MODEL"):
        load_settings()


def test_the_doctor_names_the_version_it_serves(
    environment: pytest.MonkeyPatch, tmp_path: Path, store: tuple[str, sa.Engine]
) -> None:
    # The real embedded GGUF, registered as a version: the doctor loads it and asks it.
    url, engine = store
    environment.setenv("AOI_DATABASE_URL", url)
    version = register_version(
        engine, name="smollm2-base", path=embedded_model_path(), base="SmolLM2-135M-Instruct"
    )
    use_version(engine, "smollm2-base", actor="alice")
    check = check_model(load_settings())
    assert check.ok, check.detail
    assert check.detail.startswith(
        f"serves version smollm2-base (#{version.id}, activated with `aoi models use`): "
    )
