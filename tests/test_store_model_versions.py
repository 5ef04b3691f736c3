"""Revision 0007 and ``store.model_versions``: registered GGUF files, and which one is served.

On SQLite and PostgreSQL: the upgrade keeps a 0006 store's model versions (their
never-read active flag does not start the history; those rows, without a sha256,
are refused when activated) and the downgrade flags the active one. A version is
registered with its file's sha256 and size, and refused when the file is missing
or not a GGUF, when its name is taken, or when it is named with text no name may
hold. `use` and `rollback` only ever append to the history, two at once are both
recorded in order, and the active version is always the newest entry; a file
that changed or vanished since registration is refused when it is activated or
resolved.

Registration checks only the GGUF magic (the first four bytes, b"GGUF"), so the
test files here are b"GGUF" followed by arbitrary bytes, not real models.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store.db import make_engine
from store.migrate import alembic_config, current_revision, head_revision, schema_drift, upgrade
from store.model_versions import (
    NAME_PATTERN,
    ModelFileRefused,
    ModelVersionExists,
    ModelVersionNotFound,
    NothingToRollBack,
    active_version,
    current_activation,
    find_version,
    get_version,
    history,
    list_versions,
    register_version,
    resolve,
    rollback,
    use_version,
)
from store.models import ModelActivation, ModelVersion, TrainingRun
from store.training import RunNotFound, start_run

NEW_TABLES = {"training_runs", "training_steps", "model_activations"}


def gguf_file(folder: Path, name: str, payload: bytes = b"weights") -> Path:
    """A file registration accepts: the GGUF magic, then anything."""
    path = folder / f"{name}.gguf"
    path.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + payload)
    return path


def _register(engine: sa.Engine, folder: Path, name: str, **extra: object) -> ModelVersion:
    path = gguf_file(folder, name, payload=name.encode() * 8)
    return register_version(engine, name=name, path=path, base="SmolLM2-135M", **extra)  # type: ignore[arg-type]


def _downgrade(engine: sa.Engine, revision: str) -> None:
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def _columns(engine: sa.Engine, table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(engine).get_columns(table)}


def _served(engine: sa.Engine) -> str:
    version = active_version(engine)
    return "embedded" if version is None else version.name


# --- the migration -------------------------------------------------------------------------


def test_0007_keeps_old_versions_and_downgrades_cleanly(database_url: str, tmp_path: Path) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine, revision="0006")
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO model_versions (name, path, base_model, method, metrics, "
                    "created_at, active) VALUES "
                    "('old-a', '/m/a.gguf', 'smollm2', 'sft', '{}', CURRENT_TIMESTAMP, FALSE), "
                    "('old-b', '/m/b.gguf', 'smollm2', 'grpo', '{}', CURRENT_TIMESTAMP, TRUE)"
                )
            )
        assert upgrade(engine) == head_revision() == "0007"
        assert schema_drift(engine) == []
        assert set(sa.inspect(engine).get_table_names()) >= NEW_TABLES
        old = {v.name: v for v in list_versions(engine)}
        assert set(old) == {"old-a", "old-b"}
        assert (old["old-b"].base, old["old-b"].method, old["old-b"].path) == (
            "smollm2",
            "grpo",
            "/m/b.gguf",
        )
        assert (old["old-a"].sha256, old["old-a"].size_bytes, old["old-a"].run_id) == ("", 0, None)
        assert history(engine) == []  # nothing read the flag: the served model stays
        assert _served(engine) == "embedded"
        with pytest.raises(ModelFileRefused, match="register its file again"):
            use_version(engine, "old-b", actor="alice")

        fresh = _register(engine, tmp_path, "fresh")
        use_version(engine, "fresh", actor="alice")
        _downgrade(engine, "0006")
        assert current_revision(engine) == "0006"
        assert not set(sa.inspect(engine).get_table_names()) & NEW_TABLES
        assert "base_model" in _columns(engine, "model_versions")
        assert not {"sha256", "size_bytes", "run_id", "notes", "base"} & _columns(
            engine, "model_versions"
        )
        with engine.connect() as connection:
            flags = dict(
                connection.execute(sa.text("SELECT name, active FROM model_versions")).all()
            )
        assert {name: bool(flag) for name, flag in flags.items()} == {
            "old-a": False,
            "old-b": False,
            "fresh": True,
        }
        assert fresh.id is not None

        assert upgrade(engine) == "0007"
        assert schema_drift(engine) == []
        assert _served(engine) == "embedded"
        assert len(list_versions(engine)) == 3
    finally:
        engine.dispose()


def test_0007_on_an_empty_store_activates_nothing(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        assert history(engine) == []
        assert active_version(engine) is None
        _downgrade(engine, "0006")
        assert upgrade(engine) == "0007"
    finally:
        engine.dispose()


# --- registering ---------------------------------------------------------------------------


def test_a_version_records_its_file(migrated_engine: sa.Engine, tmp_path: Path) -> None:
    path = gguf_file(tmp_path, "m", payload=b"x" * 5000)
    version = register_version(
        migrated_engine,
        name="smollm2-grpo-3",
        path=str(path),
        base="SmolLM2-135M-Instruct",
        metrics={"heldout_avg@1": 0.31, "mean_reward": 0.52},
        notes="first GRPO run",
        method="grpo+lora",
    )
    assert version.id is not None
    assert version.path == str(path.resolve())
    assert version.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert version.size_bytes == path.stat().st_size == 5008
    (stored,) = list_versions(migrated_engine)
    assert stored.model_dump() == version.model_dump()
    assert get_version(migrated_engine, "smollm2-grpo-3").id == version.id
    assert get_version(migrated_engine, version.id).name == "smollm2-grpo-3"
    assert get_version(migrated_engine, f"version:{version.id}").id == version.id
    assert active_version(migrated_engine) is None  # registering activates nothing


def test_a_version_remembers_its_run(migrated_engine: sa.Engine, tmp_path: Path) -> None:
    run_id = start_run(migrated_engine, base="b", config={}, dataset={}, output_dir="out")
    version = _register(migrated_engine, tmp_path, "from-run", run_id=run_id)
    assert version.run_id == run_id
    with pytest.raises(RunNotFound, match="register without run_id"):
        _register(migrated_engine, tmp_path, "orphan", run_id=run_id + 100)
    with migrated_engine.begin() as connection:
        connection.execute(sa.delete(TrainingRun))
    kept = get_version(migrated_engine, "from-run")
    assert kept.run_id is None
    assert kept.sha256 == version.sha256


def test_a_missing_or_non_gguf_file_is_refused(migrated_engine: sa.Engine, tmp_path: Path) -> None:
    with pytest.raises(ModelFileRefused, match="no model file"):
        register_version(migrated_engine, name="a", path=tmp_path / "nope.gguf", base="b")
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\x00\x01not gguf")
    with pytest.raises(ModelFileRefused, match="not a GGUF file"):
        register_version(migrated_engine, name="a", path=weights, base="b")
    with pytest.raises(ModelFileRefused, match="no model file"):
        register_version(migrated_engine, name="a", path=tmp_path, base="b")
    assert list_versions(migrated_engine) == []


def test_a_name_is_registered_once(migrated_engine: sa.Engine, tmp_path: Path) -> None:
    _register(migrated_engine, tmp_path, "v1")
    with pytest.raises(ModelVersionExists, match="names are never reused"):
        register_version(migrated_engine, name="v1", path=gguf_file(tmp_path, "other"), base="b")
    assert len(list_versions(migrated_engine)) == 1


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "must not be empty"),
        ("smol\x00lm", "NUL"),
        ("a" * 101, "at most 100"),
        ("has space", "letters, digits"),
        ("version:x", "letters, digits"),
        ("-leading", "letters, digits"),
        ("42", "all digits"),
        ("embedded", "reserved"),
        ("Active", "reserved"),
        ("\ud800", "letters, digits|Unicode"),
    ],
)
def test_names_that_cannot_be_one_are_refused(
    migrated_engine: sa.Engine, tmp_path: Path, name: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        register_version(migrated_engine, name=name, path=gguf_file(tmp_path, "m"), base="b")
    assert list_versions(migrated_engine) == []


_NAMES = st.one_of(st.text(max_size=120), st.from_regex(NAME_PATTERN, fullmatch=True))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=_NAMES)
def test_any_text_either_registers_as_itself_or_is_refused(
    migrated_engine: sa.Engine, tmp_path: Path, name: str
) -> None:
    before = list_versions(migrated_engine)
    try:
        version = register_version(
            migrated_engine, name=name, path=gguf_file(tmp_path, "m"), base="b"
        )
    except ModelVersionExists:
        assert name in {v.name for v in before}
        return
    except ValueError:
        assert list_versions(migrated_engine) == before
        return
    assert get_version(migrated_engine, name).id == version.id
    assert version.name == name


# --- use, rollback, resolve ----------------------------------------------------------------


def test_use_and_rollback_append_to_the_history(migrated_engine: sa.Engine, tmp_path: Path) -> None:
    a = _register(migrated_engine, tmp_path, "a")
    b = _register(migrated_engine, tmp_path, "b")
    assert use_version(migrated_engine, "a", actor="alice", reason="first") == a
    assert use_version(migrated_engine, b.id, actor="bob") == b
    assert _served(migrated_engine) == "b"
    assert rollback(migrated_engine, actor="carol") == a
    assert rollback(migrated_engine, actor="carol") == b  # a second rollback undoes the first
    assert use_version(migrated_engine, "embedded", actor="dave") is None
    assert _served(migrated_engine) == "embedded"
    assert rollback(migrated_engine, actor="erin") == b
    rows = history(migrated_engine)
    assert [(r.version_id, r.actor) for r in rows] == [
        (a.id, "alice"),
        (b.id, "bob"),
        (a.id, "carol"),
        (b.id, "carol"),
        (None, "dave"),
        (b.id, "erin"),
    ]
    assert rows[0].reason == "first"
    assert rows[2].reason == "rollback"
    newest = current_activation(migrated_engine)
    assert newest is not None
    assert newest.id == rows[-1].id


def test_rolling_back_the_first_version_returns_to_the_built_in_model(
    migrated_engine: sa.Engine, tmp_path: Path
) -> None:
    _register(migrated_engine, tmp_path, "a")
    use_version(migrated_engine, "a", actor="alice")
    use_version(migrated_engine, "a", actor="bob")  # the same again skips in a rollback
    assert rollback(migrated_engine, actor="alice") is None
    assert _served(migrated_engine) == "embedded"


def test_nothing_to_roll_back_to(migrated_engine: sa.Engine, tmp_path: Path) -> None:
    with pytest.raises(NothingToRollBack, match="aoi models use"):
        rollback(migrated_engine, actor="alice")
    use_version(migrated_engine, "embedded", actor="alice")
    with pytest.raises(NothingToRollBack, match="only the built-in model"):
        rollback(migrated_engine, actor="alice")
    assert len(history(migrated_engine)) == 1


def test_unknown_versions_and_bad_arguments(migrated_engine: sa.Engine, tmp_path: Path) -> None:
    _register(migrated_engine, tmp_path, "a")
    with pytest.raises(ModelVersionNotFound, match="aoi models list"):
        use_version(migrated_engine, "b", actor="alice")
    with pytest.raises(ModelVersionNotFound):
        use_version(migrated_engine, 999, actor="alice")
    with pytest.raises(ModelVersionNotFound):
        use_version(migrated_engine, "a\x00", actor="alice")
    with pytest.raises(ValueError, match="actor must not be empty"):
        use_version(migrated_engine, "a", actor=" ")
    with pytest.raises(ValueError, match="reason"):
        use_version(migrated_engine, "a", actor="alice", reason="x" * 20_001)
    assert history(migrated_engine) == []


def test_a_changed_file_is_refused_at_use_and_at_serve_time(
    migrated_engine: sa.Engine, tmp_path: Path
) -> None:
    a = _register(migrated_engine, tmp_path, "a")
    b = _register(migrated_engine, tmp_path, "b")
    use_version(migrated_engine, "a", actor="alice")
    use_version(migrated_engine, "b", actor="alice")
    assert resolve(migrated_engine, None) == Path(b.path)

    content = bytearray(Path(b.path).read_bytes())
    content[-1] ^= 0xFF  # same size, other bytes: only the hash tells
    Path(b.path).write_bytes(bytes(content))
    with pytest.raises(ModelFileRefused, match=r"changed since it was registered \(sha256"):
        resolve(migrated_engine, None)
    with pytest.raises(ModelFileRefused, match="aoi models rollback"):
        use_version(migrated_engine, "b", actor="alice")

    Path(a.path).write_bytes(Path(a.path).read_bytes() + b"more")
    with pytest.raises(ModelFileRefused, match="bytes, registered"):
        rollback(migrated_engine, actor="alice")
    Path(a.path).unlink()
    with pytest.raises(ModelFileRefused, match="is gone"):
        resolve(migrated_engine, "version:a")
    assert len(history(migrated_engine)) == 2  # refusals record nothing
    assert use_version(migrated_engine, "embedded", actor="alice") is None
    assert resolve(migrated_engine, None) is None


def test_resolve_names_the_file_to_serve(migrated_engine: sa.Engine, tmp_path: Path) -> None:
    assert resolve(migrated_engine, None) is None
    a = _register(migrated_engine, tmp_path, "a")
    assert resolve(migrated_engine, "a") == Path(a.path)
    assert resolve(migrated_engine, f"version:{a.id}") == Path(a.path)
    assert resolve(migrated_engine, "embedded") is None
    assert resolve(migrated_engine, "active") is None
    use_version(migrated_engine, "a", actor="alice")
    assert resolve(migrated_engine, "active") == Path(a.path)
    with pytest.raises(ModelVersionNotFound):
        resolve(migrated_engine, "version:zzz")


def test_the_history_is_append_only_in_the_database(
    migrated_engine: sa.Engine, tmp_path: Path
) -> None:
    _register(migrated_engine, tmp_path, "a")
    use_version(migrated_engine, "a", actor="alice")
    before = [row.model_dump() for row in history(migrated_engine)]
    use_version(migrated_engine, "embedded", actor="bob")
    rollback(migrated_engine, actor="carol")
    assert [row.model_dump() for row in history(migrated_engine)][:1] == before


def test_concurrent_uses_are_all_recorded_in_order(
    migrated_engine: sa.Engine, tmp_path: Path
) -> None:
    names = [f"v{i}" for i in range(6)]
    for name in names:
        _register(migrated_engine, tmp_path, name)
    barrier = threading.Barrier(len(names) + 2)
    errors: list[BaseException] = []

    def use(name: str) -> None:
        try:
            barrier.wait(10)
            use_version(migrated_engine, name, actor=name)
        except BaseException as exc:
            errors.append(exc)

    def roll() -> None:
        try:
            barrier.wait(10)
            rollback(migrated_engine, actor="rollback")
        except NothingToRollBack:
            pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=use, args=(name,)) for name in names]
    threads += [threading.Thread(target=roll) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    rows = history(migrated_engine)
    assert sorted(r.actor for r in rows if r.actor != "rollback") == names
    times = [r.activated_at for r in rows]
    assert times == sorted(times)  # id order is the order the appends happened in
    _check_rollbacks(rows)
    newest = rows[-1]
    active = active_version(migrated_engine)
    assert (None if active is None else active.id) == newest.version_id


def _check_rollbacks(rows: list[ModelActivation]) -> None:
    # Each rollback row names the newest earlier model other than the one served before it.
    served: list[int | None] = [None]
    for row in rows:
        if row.actor == "rollback":
            current = served[-1]
            assert row.version_id == [v for v in served if v != current][-1]
        served.append(row.version_id)


_OPS = st.lists(
    st.one_of(st.sampled_from(["a", "b", "c", "embedded"]), st.just("rollback")),
    max_size=12,
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_OPS)
def test_the_active_version_is_always_what_the_history_says(
    migrated_engine: sa.Engine, tmp_path: Path, ops: list[str]
) -> None:
    with migrated_engine.begin() as connection:
        connection.execute(sa.delete(ModelActivation))
    ids = {}
    for name in ("a", "b", "c"):
        found = find_version(migrated_engine, name) or _register(migrated_engine, tmp_path, name)
        ids[name] = found.id
    ids["embedded"] = None
    served: list[int | None] = [None]  # before any activation: the built-in model
    for op in ops:
        before = [row.model_dump() for row in history(migrated_engine)]
        if op == "rollback":
            earlier = [v for v in served if v != served[-1]]
            if not earlier:
                with pytest.raises(NothingToRollBack):
                    rollback(migrated_engine, actor="prop")
            else:
                rollback(migrated_engine, actor="prop")
                served.append(earlier[-1])
        else:
            use_version(migrated_engine, op, actor="prop")
            served.append(ids[op])
        rows = history(migrated_engine)
        assert [row.model_dump() for row in rows][: len(before)] == before
        assert [row.version_id for row in rows] == served[1:]
        active = active_version(migrated_engine)
        assert (None if active is None else active.id) == served[-1]
        assert resolve(migrated_engine, None) == (None if active is None else Path(active.path))


def test_versions_are_listed_in_registration_order(
    migrated_engine: sa.Engine, tmp_path: Path
) -> None:
    for name in ("z", "y", "x"):
        _register(migrated_engine, tmp_path, name)
    assert [v.name for v in list_versions(migrated_engine)] == ["z", "y", "x"]
