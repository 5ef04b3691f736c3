"""Errors the store raises, each one saying what failed and what to do next.

Callers (the CLI, the bot) show these messages to people as they are, so every
message names the database (password masked) and the next step. Driver
exceptions never leave the store untranslated when we can recognise them.
The names state the condition (`DatabaseReadOnly`, not `DatabaseReadOnlyError`):
they read as sentences in `except` clauses, and the base class says "error".
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""


class UnsupportedDatabase(StoreError):  # noqa: N818
    """The URL cannot be parsed or names a back end the store does not support."""


class DatabaseUnavailable(StoreError):  # noqa: N818
    """The database cannot be reached or opened (server down, bad host, bad path)."""


class DatabaseReadOnly(StoreError):  # noqa: N818
    """The database accepts reads but refuses writes."""


class DiskFull(StoreError):  # noqa: N818
    """The database ran out of space while writing."""


class DatabaseBusy(StoreError):  # noqa: N818
    """Another writer held the database lock longer than the busy timeout."""


class SchemaMissing(StoreError):  # noqa: N818
    """The database exists but its tables have not been created (no migration ran)."""


class IllegalTransition(StoreError):  # noqa: N818
    """A proposal state change that the approval state machine never allows."""


class ProposalNotFound(StoreError):  # noqa: N818
    """No proposal has the given id."""


class ApprovalRefused(StoreError):  # noqa: N818
    """The approval policy does not admit this approver for this proposal (nothing changed)."""
