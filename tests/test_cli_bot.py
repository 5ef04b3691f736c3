"""`aoi bot` refuses what it cannot run with one line that says how to fix it."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli import assert_one_clean_error, run_aoi


def test_without_slack_tokens_it_says_how_to_connect(tmp_path: Path) -> None:
    line = assert_one_clean_error(run_aoi("bot", cwd=tmp_path), code=2)
    assert "AOI_SLACK_BOT_TOKEN" in line
    assert "manifests/slack-app.yaml" in line


def test_socket_mode_needs_the_app_token(tmp_path: Path) -> None:
    env = {"AOI_SLACK_BOT_TOKEN": "xoxb-1"}
    line = assert_one_clean_error(run_aoi("bot", cwd=tmp_path, env=env), code=2)
    assert "AOI_SLACK_APP_TOKEN" in line
    assert "--http" in line


def test_http_mode_needs_the_signing_secret(tmp_path: Path) -> None:
    env = {"AOI_SLACK_BOT_TOKEN": "xoxb-1"}
    line = assert_one_clean_error(run_aoi("bot", "--http", "3000", cwd=tmp_path, env=env), code=2)
    assert "AOI_SLACK_SIGNING_SECRET" in line


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("- name: prod\n  channels: '^inc-('\n", "regular expression"),
        ("- name: prod\n  colour: blue\n", "colour"),
        ("{not: [yaml\n", "AOI_CLUSTER_ROUTES"),
        ("[]\n", "non-empty"),
    ],
)
def test_a_broken_routes_file_is_one_line_naming_it(
    tmp_path: Path, content: str, words: str
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(content)
    env = {
        "AOI_SLACK_BOT_TOKEN": "xoxb-1",
        "AOI_SLACK_APP_TOKEN": "xapp-1",
        "AOI_CLUSTER_ROUTES": str(routes),
    }
    line = assert_one_clean_error(run_aoi("bot", cwd=tmp_path, env=env), code=2)
    assert words in line
    assert str(routes) in line


def test_channel_ids_must_be_ids(tmp_path: Path) -> None:
    env = {"AOI_INCIDENT_CHANNELS": "#incidents"}
    line = assert_one_clean_error(run_aoi("bot", cwd=tmp_path, env=env), code=2)
    assert "AOI_INCIDENT_CHANNELS" in line


def test_the_help_names_both_modes(tmp_path: Path) -> None:
    result = run_aoi("bot", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "--http" in result.stdout
    assert "Socket Mode" in result.stdout
