"""Model versions the bot can serve, and the append-only history of which one it serves.

A trained model becomes a version: a GGUF file registered under a name with its
sha256, size, base model, the training run it came from and its evaluation. Which
version is served is never a flag on a row; it is the newest `ModelActivation`
(`aoi models use` adds one, `rollback` adds one too), so the history says who
switched, when and why, and nothing in it is ever edited. A NULL version in the
history means the built-in default (the embedded model).

A version's file is checked again whenever it is activated or resolved for
serving: one that vanished, or whose sha256 no longer matches the registration,
is refused with what to do (a half-copied or overwritten file would otherwise
be served under a trusted name). Hashing reads the whole file, about a second
per GB.

Two `use` calls at once are both recorded, one after the other: each takes the
history's lock (PostgreSQL: a transaction-scoped advisory lock; SQLite: the file's
write lock, taken by the transaction's first statement) before it reads the
current state and appends, so a rollback's "the one before" is never computed on
a stale history.

Example::

    version = register_version(engine, name="smollm2-grpo-3", path="var/export/model.gguf",
                               base="SmolLM2-135M-Instruct", run_id=run_id,
                               metrics={"heldout_avg@1": 0.31})
    use_version(engine, "smollm2-grpo-3", actor="alice", reason="better on held-out")
    path = resolve(engine, None)   # the active version's file; None = the built-in model
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from store.db import session_scope
from store.errors import StoreError
from store.models import ModelActivation, ModelVersion, TrainingRun
from store.outcomes import _checked
from store.slack import MAX_ID_CHARS, MAX_LABEL_CHARS, MAX_NOTE_CHARS
from store.training import MAX_PATH_CHARS, RunNotFound, json_object
from store.types import utcnow

GGUF_MAGIC = b"GGUF"
BUILT_IN = "embedded"
"""What `use` and `resolve` call the built-in default model."""
VERSION_PREFIX = "version:"
"""How AOI_MODEL names a version: ``version:NAME`` or ``version:ID``."""
MAX_NAME_CHARS = 100
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_RESERVED_NAMES = frozenset({BUILT_IN, "analyzers", "active"})
_HISTORY_LOCK_KEY = 0x414F494D  # "AOIM": any constant shared by every aoi process
_HASH_CHUNK = 1 << 20


class ModelVersionNotFound(StoreError):  # noqa: N818
    """No model version has the given name or id."""


class ModelVersionExists(StoreError):  # noqa: N818
    """A model version with this name is registered already (names are never reused)."""


class ModelFileRefused(StoreError):  # noqa: N818
    """A version's file is missing, not a GGUF, or changed since it was registered."""


class NothingToRollBack(StoreError):  # noqa: N818
    """The activation history holds nothing but the model served now."""


def register_version(
    engine: Engine,
    *,
    name: str,
    path: str | Path,
    base: str,
    run_id: int | None = None,
    metrics: Mapping[str, Any] | None = None,
    notes: str = "",
    method: str = "",
) -> ModelVersion:
    """Register the GGUF file at ``path`` as version ``name``; returns the new row.

    The file's sha256 and size are recorded (it is read once, whole); its absolute
    path is kept. ``name``: letters, digits and ``. _ + -``, not all digits (ids are
    numbers) and not ``embedded``; ``base``: the base model it was trained from;
    ``run_id``: the training run that made it; ``metrics``: its evaluation (a JSON
    object); ``method``: how it was made (e.g. "grpo+lora"). Raises ValueError for a
    malformed argument, ``ModelFileRefused`` for a missing or non-GGUF file,
    ``ModelVersionExists`` for a name in use and ``RunNotFound`` for an unknown run.
    Nothing is activated: `use_version` does that.
    """
    name = check_name(name)
    base = _checked("base", base, limit=MAX_PATH_CHARS)
    notes = _checked("notes", notes, limit=MAX_NOTE_CHARS)
    method = _checked("method", method, limit=MAX_LABEL_CHARS)
    values = json_object("metrics", {} if metrics is None else metrics)
    if run_id is not None and (isinstance(run_id, bool) or not isinstance(run_id, int)):
        raise ValueError(f"run_id must be an integer or None, not {type(run_id).__name__}")
    file = _gguf_file(path)
    digest, size = file_digest(file)
    version = ModelVersion(
        name=name,
        path=str(file),
        sha256=digest,
        size_bytes=size,
        base=base,
        method=method,
        run_id=run_id,
        metrics=values,
        notes=notes,
    )
    try:
        with session_scope(engine) as session:
            if session.exec(select(ModelVersion.id).where(col(ModelVersion.name) == name)).first():
                raise _exists(name)
            if run_id is not None and session.get(TrainingRun, run_id) is None:
                raise RunNotFound(f"no training run has id {run_id}; register without run_id")
            session.add(version)
    except IntegrityError:
        # Registered by someone else between our check and our insert.
        if find_version(engine, name) is not None:
            raise _exists(name) from None
        raise
    return version


def list_versions(engine: Engine) -> list[ModelVersion]:
    """Every registered version, oldest first."""
    with session_scope(engine) as session:
        return list(session.exec(select(ModelVersion).order_by(col(ModelVersion.id))))


def find_version(engine: Engine, name_or_id: str | int) -> ModelVersion | None:
    """The version named (or numbered) ``name_or_id``, ``version:`` prefix allowed; else None."""
    try:
        spec = _spec(name_or_id)
    except ValueError:
        return None  # text no version can be named (NUL, too long) names none
    with session_scope(engine) as session:
        if spec.isdigit():
            return session.get(ModelVersion, int(spec))
        return session.exec(select(ModelVersion).where(col(ModelVersion.name) == spec)).first()


def get_version(engine: Engine, name_or_id: str | int) -> ModelVersion:
    """Like `find_version`, but a version that does not exist raises ``ModelVersionNotFound``."""
    version = find_version(engine, name_or_id)
    if version is None:
        raise ModelVersionNotFound(
            f"no model version {str(name_or_id)[:MAX_NAME_CHARS]!r} is registered: "
            f"`aoi models list` shows them (or use {BUILT_IN!r} for the built-in model)"
        )
    return version


def history(engine: Engine) -> list[ModelActivation]:
    """Every activation, oldest first (the last one names what is served)."""
    with session_scope(engine) as session:
        return list(session.exec(select(ModelActivation).order_by(col(ModelActivation.id))))


def current_activation(engine: Engine) -> ModelActivation | None:
    """The newest activation, or None when nobody ever ran `aoi models use`."""
    with session_scope(engine) as session:
        return _newest(session)


def active_version(engine: Engine) -> ModelVersion | None:
    """The version served now: the newest activation's; None for the built-in model."""
    with session_scope(engine) as session:
        newest = _newest(session)
        if newest is None or newest.version_id is None:
            return None
        return session.get(ModelVersion, newest.version_id)


def use_version(
    engine: Engine, name_or_id: str | int, *, actor: str, reason: str = ""
) -> ModelVersion | None:
    """Serve version ``name_or_id`` (``embedded``: the built-in model) from now on.

    Appends an activation by ``actor`` with ``reason``; returns the version (None for
    the built-in). The version's file is checked first: a missing or changed file
    raises ``ModelFileRefused`` and nothing is recorded. Raises
    ``ModelVersionNotFound`` for an unknown version and ValueError for a malformed
    argument. Activating what is served already is recorded too (who confirmed it).
    """
    actor = _checked("actor", actor, limit=MAX_ID_CHARS, required=True)
    reason = _checked("reason", reason, limit=MAX_NOTE_CHARS)
    version = None if _names(name_or_id, BUILT_IN) else get_version(engine, name_or_id)
    if version is not None:
        verified_path(version)
    with session_scope(engine) as session:
        _lock_history(session)
        if version is not None and session.get(ModelVersion, version.id) is None:
            raise ModelVersionNotFound(f"model version {version.name!r} is gone")
        _append(session, version, actor=actor, reason=reason)
    return version


def rollback(engine: Engine, *, actor: str, reason: str = "") -> ModelVersion | None:
    """Serve again what was served before the current model; returns it (None: built-in).

    "Before" is the newest earlier activation naming another model; before the first
    activation the built-in model was served, so the first version activated rolls
    back to it. The rollback is a new activation (a second rollback undoes the first).
    Raises ``NothingToRollBack`` when the history holds nothing else, and
    ``ModelFileRefused`` when the earlier version's file is missing or changed (then
    nothing is recorded; choose one with `use_version`).
    """
    actor = _checked("actor", actor, limit=MAX_ID_CHARS, required=True)
    reason = _checked("reason", reason, limit=MAX_NOTE_CHARS)
    with session_scope(engine) as session:
        _lock_history(session)
        served = [
            None,
            *session.exec(select(ModelActivation.version_id).order_by(col(ModelActivation.id))),
        ]
        current = served[-1]
        earlier = [version_id for version_id in served if version_id != current]
        if not earlier:
            what = "the built-in model" if current is None else "one model version"
            raise NothingToRollBack(
                f"nothing to roll back to: only {what} was ever served; choose another "
                "with `aoi models use NAME`"
            )
        target_id = earlier[-1]
        target = None if target_id is None else session.get(ModelVersion, target_id)
        if target is not None:
            # Hashing holds the lock; a rollback is rare and the alternative is a race.
            verified_path(target)
        _append(session, target, actor=actor, reason=reason or "rollback")
    return target


def resolve(engine: Engine, spec: str | int | None) -> Path | None:
    """The file to serve for ``spec``, checked against its registration; None = built-in.

    ``spec``: a version's name or id (``version:`` prefix allowed), ``embedded`` for
    the built-in model, or None (or ``active``) for the active version. Raises
    ``ModelVersionNotFound`` and ``ModelFileRefused`` with what to do.
    """
    if spec is None or _names(spec, "active"):
        version = active_version(engine)
    elif _names(spec, BUILT_IN):
        return None
    else:
        version = get_version(engine, spec)
    return None if version is None else verified_path(version)


def verified_path(version: ModelVersion) -> Path:
    """``version``'s file if it is still the one registered (size and sha256); else refused."""
    path = Path(version.path)
    advice = (
        f"put the registered file back at {path}, register the new file under a new name, "
        "or serve another model (`aoi models use embedded` or `aoi models rollback`)"
    )
    if not version.sha256:
        raise ModelFileRefused(
            f"model version {version.name!r} was registered before files were checksummed "
            "(store revision 0007): register its file again under a new name"
        )
    if not path.is_file():
        raise ModelFileRefused(f"model version {version.name!r}: its file {path} is gone; {advice}")
    size = path.stat().st_size
    if size != version.size_bytes:
        raise ModelFileRefused(
            f"model version {version.name!r}: its file {path} changed since it was registered "
            f"({size} bytes, registered {version.size_bytes}); {advice}"
        )
    digest, _ = file_digest(path)
    if digest != version.sha256:
        raise ModelFileRefused(
            f"model version {version.name!r}: its file {path} changed since it was registered "
            f"(sha256 {digest[:12]}…, registered {version.sha256[:12]}…); {advice}"
        )
    return path


def file_digest(path: Path) -> tuple[str, int]:
    """The sha256 (hex) and size in bytes of the file at ``path``."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def check_name(name: object) -> str:
    """``name`` if it can name a version, else a ValueError saying what a name may hold."""
    text = _checked("name", name, limit=MAX_NAME_CHARS, required=True)
    if not NAME_PATTERN.fullmatch(text):
        raise ValueError(
            f"model version name {text!r}: use letters, digits and . _ + - "
            "(starting with a letter or digit), e.g. smollm2-grpo-3"
        )
    if text.isdigit():
        raise ValueError(f"model version name {text!r} is all digits: ids are; add a letter")
    if text.lower() in _RESERVED_NAMES:
        raise ValueError(f"model version name {text!r} is reserved; choose another")
    return text


def _spec(name_or_id: str | int) -> str:
    if isinstance(name_or_id, bool):
        raise ValueError("a model version is named by its name or id, not True/False")
    if isinstance(name_or_id, int):
        return str(name_or_id)
    text = _checked("model version", name_or_id, limit=MAX_NAME_CHARS + len(VERSION_PREFIX))
    return text.strip().removeprefix(VERSION_PREFIX)


def _names(name_or_id: str | int, word: str) -> bool:
    try:
        return _spec(name_or_id) == word
    except ValueError:
        return False


def _gguf_file(path: str | Path) -> Path:
    if isinstance(path, str):
        _checked("path", path, limit=MAX_PATH_CHARS, required=True)
    elif not isinstance(path, Path):
        raise ValueError(f"path must be a path, not {type(path).__name__}")
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise ModelFileRefused(f"no model file at {file}: give the path of the exported .gguf")
    with file.open("rb") as handle:
        magic = handle.read(len(GGUF_MAGIC))
    if magic != GGUF_MAGIC:
        raise ModelFileRefused(
            f"{file} is not a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r}): "
            "register the file `aoi train export` wrote (llama.cpp loads GGUF only)"
        )
    return file


def _exists(name: str) -> ModelVersionExists:
    return ModelVersionExists(
        f"a model version named {name!r} is registered already; names are never reused: "
        "choose another (e.g. with a run number), `aoi models list` shows the taken ones"
    )


def _newest(session: Session) -> ModelActivation | None:
    query = select(ModelActivation).order_by(col(ModelActivation.id).desc()).limit(1)
    return session.exec(query).first()


def _lock_history(session: Session) -> None:
    # Serialises writers of the history until this transaction ends, before anything
    # is read, so two appends (and a rollback's look back) happen one after the other.
    if session.get_bind().dialect.name == "postgresql":
        session.connection().execute(sa.select(sa.func.pg_advisory_xact_lock(_HISTORY_LOCK_KEY)))
    else:
        # SQLite: a write statement takes the file's write lock (waiting for the busy
        # timeout), even one that changes no row.
        session.exec(
            sa.update(ModelActivation).where(sa.false()).values(reason=""),
            execution_options={"synchronize_session": False},
        )


def _append(
    session: Session, version: ModelVersion | None, *, actor: str, reason: str
) -> ModelActivation:
    activation = ModelActivation(
        version_id=None if version is None else version.id,
        activated_at=utcnow(),
        actor=actor,
        reason=reason,
    )
    session.add(activation)
    session.flush()
    return activation


__all__ = [
    "BUILT_IN",
    "GGUF_MAGIC",
    "VERSION_PREFIX",
    "ModelFileRefused",
    "ModelVersionExists",
    "ModelVersionNotFound",
    "NothingToRollBack",
    "active_version",
    "check_name",
    "current_activation",
    "file_digest",
    "find_version",
    "get_version",
    "history",
    "list_versions",
    "register_version",
    "resolve",
    "rollback",
    "use_version",
    "verified_path",
]
