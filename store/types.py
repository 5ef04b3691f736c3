"""Column types shared by the tables, so SQLite and PostgreSQL store the same things.

SQLite has no time zones and PostgreSQL's native enums need their own DDL and
migrations; both would make the two back ends drift apart. Timestamps are
therefore always aware UTC in Python, and enums are stored as their string values
in a plain VARCHAR that a later value can join without a migration.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

ENUM_LENGTH = 16


def utcnow() -> datetime:
    """The current time as an aware UTC datetime (the only kind the store accepts)."""
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp that is aware UTC on the way in and on the way out, on every back end."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _enum_values(enum_cls: type[StrEnum]) -> list[str]:
    return [member.value for member in enum_cls]


def enum_type(enum_cls: type[StrEnum]) -> sa.Enum:
    """A VARCHAR holding the enum's values (not names), returned as enum members."""
    return sa.Enum(
        enum_cls,
        native_enum=False,
        create_constraint=False,
        length=ENUM_LENGTH,
        values_callable=_enum_values,
        validate_strings=True,
    )


def enum_column(enum_cls: type[StrEnum], *, default: StrEnum, index: bool = False) -> Any:
    """A non-null enum column; `Any` because SQLModel's `sa_column` takes a bare Column."""
    return sa.Column(enum_type(enum_cls), nullable=False, default=default, index=index)
