"""The incident store: what the bot, the agents and the trainer remember.

Modules: `models` (tables and state enums), `db` (engines, sessions, row
counts), `migrate` (Alembic migrations run from code), `proposals` (atomic
approval state changes), `policy` (who may approve, applied by `proposals.approve`),
`errors` (what can go wrong, with next steps), `labels` (AIOpsLab's task types,
analysis labels and ground truth, shared by everything that grades). This package imports nothing
else of ours and reads no settings: callers pass a URL and a policy.
"""
