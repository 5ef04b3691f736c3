"""Errors the `aoi` command turns into one clear line on stderr instead of a traceback."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SettingProblem:
    """One invalid setting: the environment variable, what is wrong, where the value came from."""

    name: str
    message: str
    source: str

    def __str__(self) -> str:
        return f"{self.name}: {self.message} (from {self.source})"


class SettingsError(Exception):
    """One or more settings are invalid; each problem is one line of the message."""

    def __init__(self, problems: list[SettingProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))
