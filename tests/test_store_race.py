"""Two real processes racing on every proposal: exactly one of them may execute it."""

from __future__ import annotations

import pytest
from support.race import race

from store.migrate import upgrade

ROUNDS = 200


@pytest.mark.slow
def test_exactly_one_executor_per_proposal(database_url: str) -> None:
    upgrade(database_url)
    report = race(database_url, rounds=ROUNDS, processes=2)
    assert report.claim_winners == [1] * ROUNDS
    assert report.approve_winners == [1] * ROUNDS
    assert report.one_winner_rounds == ROUNDS
    assert report.final_states == {"EXECUTING": ROUNDS}
