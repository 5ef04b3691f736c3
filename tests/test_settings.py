"""Settings: defaults that run on one machine, help text, errors that name the variable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aoi.errors import SettingsError
from aoi.settings import Settings, env_name, load_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AOI_* variables from the caller (make exports AOI_CACHE_DIR) and no ./.env."""
    for name in list(os.environ):
        if name.upper().startswith("AOI_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _problems(env_file: Path | None = None) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load_settings(env_file=env_file)
    return [str(problem) for problem in caught.value.problems]


def test_defaults_run_on_one_machine() -> None:
    settings = load_settings()
    assert settings.database_url == "sqlite:///./var/aoi.db"
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.model == "embedded"
    assert settings.model_kind == "embedded"
    assert settings.cluster == "lab"
    assert settings.cache_dir == Path("~/.cache/aoi").expanduser()
    assert (settings.max_steps, settings.probe_calls_per_step) == (10, 3)
    assert settings.proposal_ttl_s == 900
    assert settings.digest_schedule == "0 9 * * MON"
    assert settings.approvers == []


def test_every_setting_has_a_default_and_help_text() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no description"
        assert not field.is_required(), f"{name} has no default"


def test_environment_overrides_and_approvers_are_comma_separated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AOI_APPROVERS", " U012AB3CD, W0456XYZ ,")
    monkeypatch.setenv("AOI_MAX_STEPS", "4")
    monkeypatch.setenv("AOI_LOG_LEVEL", "debug")
    settings = load_settings()
    assert settings.approvers == ["U012AB3CD", "W0456XYZ"]
    assert settings.max_steps == 4
    assert settings.log_level == "DEBUG"


def test_env_file_is_read(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("AOI_DATABASE_URL=postgresql://aoi@db:5432/aoi\nAOI_MODEL_THREADS=2\n")
    settings = load_settings(env_file=env_file)
    assert settings.database_url == "postgresql://aoi@db:5432/aoi"
    assert settings.model_threads == 2


def test_environment_wins_over_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("AOI_MAX_STEPS=3\n")
    monkeypatch.setenv("AOI_MAX_STEPS", "7")
    assert load_settings(env_file=env_file).max_steps == 7


def test_empty_values_mean_the_default(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("AOI_MAX_STEPS=\nAOI_PROMETHEUS_URL=\n")
    settings = load_settings(env_file=env_file)
    assert (settings.max_steps, settings.prometheus_url) == (10, "")


def test_bad_value_in_env_file_names_variable_and_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("AOI_MAX_STEPS=ten\n")
    assert _problems(env_file) == [
        "AOI_MAX_STEPS: Input should be a valid integer, unable to parse string as an integer "
        f"(from {env_file})"
    ]


def test_bad_value_in_environment_names_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AOI_PROPOSAL_TTL_S", "0")
    assert _problems() == ["AOI_PROPOSAL_TTL_S: Input should be greater than 0 (from environment)"]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("AOI_INCIDENT_CHANNEL_PATTERN", "^(inc", "not a valid regular expression"),
        ("AOI_DIGEST_SCHEDULE", "0 9 * MON", "has 4 field(s); a cron expression has 5"),
        ("AOI_DIGEST_SCHEDULE", "61 9 * * MON", "minute: '61' is outside 0-59"),
        ("AOI_DIGEST_SCHEDULE", "0 9 * * FUNDAY", "day of week: 'FUNDAY' is outside"),
        ("AOI_DIGEST_SCHEDULE", "*/0 * * * *", "step '0'"),
        ("AOI_APPROVERS", "U012AB3CD,@alice", "@alice not Slack user id(s)"),
        ("AOI_MODEL", "gpt4", "use 'embedded', 'analyzers', an http(s):// URL"),
        ("AOI_DATABASE_URL", "mysql://u@h/db", "unsupported database URL"),
        ("AOI_SLACK_API_URL", "slack.com/api", "is not an http:// or https:// URL"),
        ("AOI_PROMETHEUS_URL", "prometheus:9090", "is not an http:// or https:// URL"),
        ("AOI_MODEL_TIMEOUT_S", "-1", "greater than 0"),
        ("AOI_LOG_LEVEL", "loud", "Input should be 'DEBUG'"),
        ("AOI_SCENARIOS_DIR", "/no/such/folder", "is not a folder"),
    ],
)
def test_invalid_values_are_explained(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    (problem,) = _problems()
    assert problem.startswith(f"{name}: ")
    assert expected in problem
    assert problem.endswith("(from environment)")


def test_several_bad_values_give_one_line_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AOI_MAX_STEPS", "x")
    monkeypatch.setenv("AOI_PROBE_CALLS_PER_STEP", "y")
    names = [line.split(":")[0] for line in _problems()]
    assert names == ["AOI_MAX_STEPS", "AOI_PROBE_CALLS_PER_STEP"]


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("embedded", "embedded"),
        ("analyzers", "analyzers"),
        ("http://127.0.0.1:8080/v1", "http"),
        ("https://models.internal/v1", "http"),
        ("~/models/observer.gguf", "gguf"),
    ],
)
def test_model_kinds(monkeypatch: pytest.MonkeyPatch, value: str, kind: str) -> None:
    monkeypatch.setenv("AOI_MODEL", value)
    settings = load_settings()
    assert settings.model_kind == kind
    assert "~" not in settings.model


def test_cron_names_and_lists_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AOI_DIGEST_SCHEDULE", "30  8-18/2 1,15 jan-jun mon-fri")
    assert load_settings().digest_schedule == "30 8-18/2 1,15 JAN-JUN MON-FRI"


def test_secrets_stay_out_of_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AOI_SLACK_BOT_TOKEN", "xoxb-very-secret")
    settings = load_settings()
    assert "xoxb-very-secret" not in repr(settings)
    assert settings.slack_bot_token.get_secret_value() == "xoxb-very-secret"


def test_slack_api_url_gets_a_trailing_slash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AOI_SLACK_API_URL", "http://127.0.0.1:9999/api")
    assert load_settings().slack_api_url == "http://127.0.0.1:9999/api/"


def test_env_names() -> None:
    assert env_name("database_url") == "AOI_DATABASE_URL"


def test_env_example_documents_every_setting_with_its_default(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[1] / ".env.example"
    lines = example.read_text().splitlines()
    assignments = [line.removeprefix("# ") for line in lines if line.startswith("# AOI_")]
    names = {line.split("=", 1)[0] for line in assignments}
    assert names == {env_name(field) for field in Settings.model_fields}
    assert not [line for line in lines if line.startswith("AOI_")], "keep every line commented"
    uncommented = tmp_path / "uncommented.env"
    uncommented.write_text("\n".join(assignments) + "\n")
    assert load_settings(env_file=uncommented) == load_settings(env_file=None)


def test_unparsable_env_line_is_an_error_not_a_silent_default(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text('AOI_MAX_STEPS=4\nAOI_SLACK_BOT_TOKEN="xoxb-secret\nAOI_MODEL=analyzers\n')
    (problem,) = _problems(env_file)
    assert problem.startswith("AOI_SLACK_BOT_TOKEN: line 2 cannot be parsed")
    assert problem.endswith(f"(from {env_file})")
    assert "xoxb-secret" not in problem


def test_env_file_that_is_not_text(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_bytes(b"AOI_MAX_STEPS=\xff\xfe\n")
    assert _problems(env_file) == [f"{env_file}: not UTF-8 text (from {env_file})"]
