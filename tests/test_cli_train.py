"""`aoi train collect|run|export`: the errors a person meets before any minute of training is spent.

The commands run as the real `aoi` entry point against a real SQLite store. The
training and the export themselves are tested in tests/trainer/test_trainer_grpo.py
(a tiny local model through GRPO; the embedded GGUF through LoRA, export and
llama.cpp); here: an empty store, a bad config, a bad or taken version name, a
folder with no trained model, the held-out families the run leaves out, and a
collection that would record held-out scenarios or names an unknown teacher (refused
before a lab starts; the collection itself runs in tests/lab).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from support.cli import assert_one_clean_error, run_aoi

from aoi.commands.train import heldout_families
from lab.scenarios.loader import load_catalog
from store.db import make_engine
from store.migrate import upgrade
from store.model_versions import register_version


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, sa.Engine]:
    url = f"sqlite:///{tmp_path}/aoi.db"
    engine = make_engine(url)
    upgrade(engine)
    return url, engine


def _train(tmp_path: Path, url: str, *args: str):  # type: ignore[no-untyped-def]
    return run_aoi("train", *args, cwd=tmp_path, env={"AOI_DATABASE_URL": url})


def test_heldout_families_are_exactly_the_held_out_splits() -> None:
    catalog = load_catalog()
    held = set(heldout_families())
    trained = {f for s in catalog.select(split="train") for f in s.families}
    assert held, "the catalogue holds some families out"
    assert held.isdisjoint(trained)


def test_run_on_a_store_without_trajectories_says_how_to_record_some(
    tmp_path: Path, store: tuple[str, sa.Engine]
) -> None:
    result = _train(tmp_path, store[0], "run", "--steps", "1", "--out", str(tmp_path / "r"))
    message = assert_one_clean_error(result, code=2)
    assert "no trajectory to learn from" in message
    assert "aoi train collect" in message
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_run_refuses_a_config_with_an_unknown_key(
    tmp_path: Path, store: tuple[str, sa.Engine]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("steps = 2\nlearning_rat = 1e-5\n")
    result = _train(tmp_path, store[0], "run", "--config", str(config))
    message = assert_one_clean_error(result, code=2)
    assert "learning_rat" in message


def test_export_refuses_bad_and_taken_names_before_converting(
    tmp_path: Path, store: tuple[str, sa.Engine]
) -> None:
    url, engine = store
    taken = tmp_path / "taken.gguf"
    taken.write_bytes(b"GGUF\x03\x00\x00\x00" + b"x" * 64)
    register_version(engine, name="smollm2-grpo-1", path=taken, base="embedded")
    for name, words in (("bad name!", "letters, digits"), ("smollm2-grpo-1", "exists")):
        result = _train(tmp_path, url, "export", "--name", name, "--out", str(tmp_path))
        assert words in assert_one_clean_error(result, code=2)


def test_export_without_a_trained_model_says_train_first(
    tmp_path: Path, store: tuple[str, sa.Engine]
) -> None:
    result = _train(
        tmp_path, store[0], "export", "--name", "smollm2-x", "--out", str(tmp_path / "none")
    )
    assert "train first" in assert_one_clean_error(result, code=2)
    assert not list(tmp_path.glob("**/*.gguf"))


@pytest.mark.parametrize(
    ("suite", "words"),
    [
        ("heldout", "would record held-out fault families"),
        ("aiopslab", "would record held-out fault families"),
        ("wrong_bin_usage-detection-1", "never training: wrong_bin_usage-detection-1"),
        ("no-such-scenario", "no-such-scenario"),
    ],
)
def test_collect_refuses_held_out_and_unknown_scenarios_before_a_lab_starts(
    tmp_path: Path, store: tuple[str, sa.Engine], suite: str, words: str
) -> None:
    result = _train(tmp_path, store[0], "collect", "--suite", suite, "--out", str(tmp_path / "c"))
    assert words in assert_one_clean_error(result, code=2)
    assert not (tmp_path / "c").exists()


def test_collect_refuses_an_unknown_teacher(tmp_path: Path, store: tuple[str, sa.Engine]) -> None:
    result = _train(tmp_path, store[0], "collect", "--teacher", "gpt", "--out", str(tmp_path))
    message = assert_one_clean_error(result, code=2)
    assert "--teacher 'gpt'" in message
    assert "analyzers" in message


def test_collect_heldout_records_the_held_out_split_only(
    tmp_path: Path, store: tuple[str, sa.Engine]
) -> None:
    result = _train(
        tmp_path,
        store[0],
        "collect",
        "--heldout",
        "--suite",
        "k8s_target_port-misconfig-detection-1",
        "--out",
        str(tmp_path / "c"),
    )
    message = assert_one_clean_error(result, code=2)
    assert "held-out scenarios only, not k8s_target_port-misconfig-detection-1" in message
