"""The incident store: what the bot, the agents and the trainer remember.

Modules: `models` (tables and state enums), `db` (engines, sessions, row
counts), `migrate` (Alembic migrations run from code), `proposals` (atomic
approval state changes), `policy` (who may approve, applied by `proposals.approve`),
`errors` (what can go wrong, with next steps), `labels` (AIOpsLab's task types,
analysis labels and ground truth, shared by everything that grades), `outcomes` (a
lab attempt's fault families, split and verdict, which the trainer's samples need),
`training` (training runs, their configuration and per-step metrics), `model_versions`
(registered GGUF files and the append-only history of which one is served).
This package imports nothing else of ours and reads no settings: callers pass a URL
and a policy.

Each Observer decision's step keeps the exact, redacted prompt the model was sent
(`Step.messages`, `prompt_version`, `guidance_ids`, with `prompt_hash` its hash), so the
trainer rebuilds samples from the store alone; `agents.prompts.step_messages` reads it back.
"""
