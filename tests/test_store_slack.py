"""The Slack bot's store: events once, messages once per key, status moves once; both back ends."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from multiprocessing.synchronize import Barrier
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import col, select

from store.db import make_engine, session_scope
from store.errors import ProposalNotFound
from store.migrate import alembic_config, current_revision, schema_drift, upgrade
from store.models import (
    Incident,
    IncidentStatus,
    Outcome,
    Proposal,
    ProposalState,
    SlackEvent,
    SlackMessage,
    SlackMessageKind,
)
from store.proposals import claim_for_execution, expire, finish, mark_stale, reject
from store.slack import (
    END_STATES,
    IncidentNotFound,
    SlackEventBound,
    SlackEventNotFound,
    bind_event,
    claim_event,
    close_incident,
    mark_interrupted,
    mark_message_final,
    pending_proposal_messages,
    proposal_message,
    prune_events,
    record_label,
    record_message,
    settled_proposal_messages,
    thread_incident,
)
from store.types import utcnow

T = TypeVar("T")
_TIMEOUT_S = 120.0
_MISSING = 987_654
_EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Any text the store keeps: every Unicode plane but lone surrogates and NUL.
_TEXT = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")


def _incident(
    engine: sa.Engine,
    *,
    channel_id: str = "C0INC1",
    thread_ts: str = "1712345678.000100",
    status: IncidentStatus = IncidentStatus.INVESTIGATING,
) -> int:
    with session_scope(engine) as session:
        incident = Incident(
            question="checkout is slow", channel_id=channel_id, thread_ts=thread_ts, status=status
        )
        session.add(incident)
        session.flush()
        assert incident.id is not None
        return incident.id


def _proposal(engine: sa.Engine, incident_id: int, *, ttl: timedelta = timedelta(hours=1)) -> int:
    with session_scope(engine) as session:
        proposal = Proposal(
            incident_id=incident_id,
            action="scale_deployment",
            requester="U0REQ",
            expires_at=utcnow() + ttl,
        )
        session.add(proposal)
        session.flush()
        assert proposal.id is not None
        return proposal.id


def _outcomes(engine: sa.Engine, incident_id: int) -> list[Outcome]:
    with session_scope(engine) as session:
        statement = (
            select(Outcome).where(col(Outcome.incident_id) == incident_id).order_by(col(Outcome.id))
        )
        return list(session.exec(statement).all())


def _load_incident(engine: sa.Engine, incident_id: int) -> Incident:
    with session_scope(engine) as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        return incident


def _count(engine: sa.Engine, table: type[Any]) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def _in_threads(count: int, work: Callable[[int], T]) -> list[T]:
    """Run `work(index)` in `count` threads released together; their results, in index order."""
    barrier = threading.Barrier(count)
    results: dict[int, T] = {}
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(_TIMEOUT_S)
            results[index] = work(index)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(_TIMEOUT_S)
    assert errors == []
    return [results[index] for index in range(count)]


# --- claim_event --------------------------------------------------------------------------


def test_an_event_is_claimed_once(migrated_engine: sa.Engine) -> None:
    assert claim_event(migrated_engine, "Ev01ABC", kind="app_mention")
    assert not claim_event(migrated_engine, "Ev01ABC", kind="app_mention")
    assert not claim_event(migrated_engine, "Ev01ABC", kind="block_actions")
    assert claim_event(migrated_engine, "Ev01ABD", kind="app_mention")
    with session_scope(migrated_engine) as session:
        events = session.exec(select(SlackEvent).order_by(col(SlackEvent.id))).all()
    assert [(e.event_id, e.kind, e.incident_id) for e in events] == [
        ("Ev01ABC", "app_mention", None),
        ("Ev01ABD", "app_mention", None),
    ]
    assert all(e.received_at.tzinfo is not None for e in events)


def test_event_ids_differ_by_case_and_by_trailing_space(migrated_engine: sa.Engine) -> None:
    for event_id in ("Ev1", "ev1", "Ev1 ", " Ev1", "e\u0301", "\u00e9"):
        assert claim_event(migrated_engine, event_id, kind="k"), event_id


@pytest.mark.parametrize(
    ("event_id", "kind", "reason"),
    [
        ("", "app_mention", "event_id must not be empty"),
        ("x" * 256, "app_mention", "256 characters long; the store keeps at most 255"),
        ("Ev\x00", "app_mention", "NUL"),
        ("Ev\ud800", "app_mention", "lone surrogate"),
        (12345, "app_mention", "event_id must be a string, not int"),
        (None, "app_mention", "event_id must be a string, not NoneType"),
        ("Ev1", "", "kind must not be empty"),
        ("Ev1", "k" * 65, "at most 64"),
    ],
)
def test_unstorable_event_ids_are_refused_before_any_sql(
    migrated_engine: sa.Engine, event_id: Any, kind: str, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        claim_event(migrated_engine, event_id, kind=kind)
    assert _count(migrated_engine, SlackEvent) == 0


def test_an_event_id_of_exactly_255_astral_characters_is_kept(migrated_engine: sa.Engine) -> None:
    event_id = "\U0001f525" * 255  # four UTF-8 bytes each: the limit counts characters
    assert claim_event(migrated_engine, event_id, kind="k")
    assert not claim_event(migrated_engine, event_id, kind="k")
    with session_scope(migrated_engine) as session:
        assert session.exec(select(SlackEvent.event_id)).one() == event_id


@_EXAMPLES
@given(event_id=st.text(_TEXT, min_size=1, max_size=255))
def test_any_storable_event_id_is_claimed_exactly_once(
    migrated_engine: sa.Engine, event_id: str
) -> None:
    with session_scope(migrated_engine) as session:
        seen = set(session.exec(select(SlackEvent.event_id)).all())
    assert claim_event(migrated_engine, event_id, kind="k") is (event_id not in seen)
    assert claim_event(migrated_engine, event_id, kind="k") is False
    with session_scope(migrated_engine) as session:
        stored = session.exec(
            select(SlackEvent.event_id).where(col(SlackEvent.event_id) == event_id)
        ).all()
    assert stored == [event_id]


@_EXAMPLES
@given(event_id=st.text(_TEXT, min_size=256, max_size=400))
def test_longer_event_ids_are_refused(migrated_engine: sa.Engine, event_id: str) -> None:
    with pytest.raises(ValueError, match="at most 255"):
        claim_event(migrated_engine, event_id, kind="k")


def test_threads_racing_on_the_same_events_have_one_winner_each(
    migrated_engine: sa.Engine,
) -> None:
    ids = [f"EvTHREAD{number}" for number in range(40)]
    wins = _in_threads(
        6, lambda _: [claim_event(migrated_engine, event_id, kind="k") for event_id in ids]
    )
    assert [sum(column) for column in zip(*wins, strict=True)] == [1] * len(ids)
    assert _count(migrated_engine, SlackEvent) == len(ids)


def _claim_worker(url: str, ids: list[str], barrier: Barrier, results: Any, name: str) -> None:
    try:
        engine = make_engine(url)
        with engine.connect():
            pass  # connect before the race starts
        claims = []
        for event_id in ids:
            barrier.wait(_TIMEOUT_S)
            claims.append(claim_event(engine, event_id, kind=name))
        engine.dispose()
        results.put((name, claims, None))
    except BaseException as exc:  # the parent must hear about it, or it waits forever
        barrier.abort()
        results.put((name, [], f"{type(exc).__name__}: {exc}"))


@pytest.mark.slow
def test_processes_racing_on_the_same_events_have_one_winner_each(database_url: str) -> None:
    # Two replicas receiving every event at the same moment: each id is taken on once.
    upgrade(database_url)
    ids = [f"EvPROC{number}" for number in range(60)]
    context = multiprocessing.get_context("spawn")
    processes = 3
    barrier = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(target=_claim_worker, args=(database_url, ids, barrier, results, f"r{n}"))
        for n in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        outcomes = [results.get(timeout=_TIMEOUT_S) for _ in workers]
    finally:
        for worker in workers:
            worker.join(_TIMEOUT_S)
    assert [error for *_, error in outcomes if error] == []
    claims = [claims for _, claims, _ in outcomes]
    assert [sum(column) for column in zip(*claims, strict=True)] == [1] * len(ids)
    engine = make_engine(database_url)
    try:
        with session_scope(engine) as session:
            kinds = Counter(e.kind for e in session.exec(select(SlackEvent)).all())
        winners = Counter(name for name, wins, _ in outcomes for won in wins if won)
        assert kinds == winners  # each stored row is the winner's own
        assert sum(kinds.values()) == len(ids)
    finally:
        engine.dispose()


def test_prune_events_forgets_old_claims(migrated_engine: sa.Engine) -> None:
    assert claim_event(migrated_engine, "EvOLD", kind="k")
    cutoff = utcnow()
    assert claim_event(migrated_engine, "EvNEW", kind="k")
    assert prune_events(migrated_engine, before=cutoff) == 1
    assert claim_event(migrated_engine, "EvOLD", kind="k")  # forgotten, so claimable again
    assert not claim_event(migrated_engine, "EvNEW", kind="k")
    with pytest.raises(ValueError, match="naive datetime"):
        prune_events(migrated_engine, before=cutoff.replace(tzinfo=None))


# --- bind_event ---------------------------------------------------------------------------


def test_bind_event_links_an_event_to_its_incident(migrated_engine: sa.Engine) -> None:
    incident_id = _incident(migrated_engine)
    other_id = _incident(migrated_engine)
    assert claim_event(migrated_engine, "Ev1", kind="app_mention")
    bind_event(migrated_engine, "Ev1", incident_id)
    bind_event(migrated_engine, "Ev1", incident_id)  # again: nothing changes
    with pytest.raises(SlackEventBound, match=f"already belongs to incident {incident_id}"):
        bind_event(migrated_engine, "Ev1", other_id)
    with session_scope(migrated_engine) as session:
        assert session.exec(select(SlackEvent.incident_id)).one() == incident_id


def test_bind_event_names_what_is_missing(migrated_engine: sa.Engine) -> None:
    incident_id = _incident(migrated_engine)
    with pytest.raises(SlackEventNotFound, match="claim it first"):
        bind_event(migrated_engine, "EvNEVER", incident_id)
    assert claim_event(migrated_engine, "Ev1", kind="k")
    with pytest.raises(IncidentNotFound, match=f"no incident has id {_MISSING}"):
        bind_event(migrated_engine, "Ev1", _MISSING)
    with pytest.raises(ValueError, match="must not be empty"):
        bind_event(migrated_engine, "", incident_id)
    bind_event(migrated_engine, "Ev1", incident_id)  # the failures left it bindable


def test_deleting_an_incident_unbinds_its_events(migrated_engine: sa.Engine) -> None:
    incident_id = _incident(migrated_engine)
    assert claim_event(migrated_engine, "Ev1", kind="k")
    bind_event(migrated_engine, "Ev1", incident_id)
    with migrated_engine.begin() as connection:
        connection.execute(sa.delete(Incident).where(col(Incident.id) == incident_id))
    with session_scope(migrated_engine) as session:
        assert session.exec(select(SlackEvent.incident_id)).one() is None
    assert not claim_event(migrated_engine, "Ev1", kind="k")  # still claimed
    bind_event(migrated_engine, "Ev1", _incident(migrated_engine))


# --- thread_incident ----------------------------------------------------------------------


def test_thread_incident_finds_the_newest_incident_of_the_thread(
    migrated_engine: sa.Engine,
) -> None:
    first = _incident(migrated_engine, channel_id="C1", thread_ts="100.1")
    _incident(migrated_engine, channel_id="C1", thread_ts="100.2")
    _incident(migrated_engine, channel_id="C2", thread_ts="100.1")
    found = thread_incident(migrated_engine, "C1", "100.1")
    assert found is not None
    assert found.id == first
    second = _incident(migrated_engine, channel_id="C1", thread_ts="100.1")
    found = thread_incident(migrated_engine, "C1", "100.1")
    assert found is not None
    assert found.id == second
    assert found.question == "checkout is slow"


def test_thread_incident_never_matches_incidents_from_outside_slack(
    migrated_engine: sa.Engine,
) -> None:
    _incident(migrated_engine, channel_id="", thread_ts="")  # a CLI run
    assert thread_incident(migrated_engine, "", "") is None
    assert thread_incident(migrated_engine, "C1", "") is None
    assert thread_incident(migrated_engine, "", "100.1") is None
    assert thread_incident(migrated_engine, "C1", "999.9") is None
    assert thread_incident(migrated_engine, "C\x00", "100.1") is None
    assert thread_incident(migrated_engine, "C" * 10_000, "100.1") is None


# --- record_message and proposal_message --------------------------------------------------


def test_record_message_keeps_what_was_posted(migrated_engine: sa.Engine) -> None:
    incident_id = _incident(migrated_engine)
    message = record_message(
        migrated_engine, incident_id=incident_id, kind="progress", channel_id="C1", ts="1.1"
    )
    assert message.id is not None
    assert (message.kind, message.post_key, message.final) == (SlackMessageKind.PROGRESS, "", False)
    assert message.created_at.tzinfo is not None
    with session_scope(migrated_engine) as session:
        stored = session.get(SlackMessage, message.id)
        assert stored is not None
        assert (stored.incident_id, stored.channel_id, stored.ts) == (incident_id, "C1", "1.1")


def test_record_message_is_idempotent_on_its_post_key(migrated_engine: sa.Engine) -> None:
    incident_id = _incident(migrated_engine)
    first = record_message(
        migrated_engine,
        incident_id=incident_id,
        kind="diagnosis",
        channel_id="C1",
        ts="1.1",
        post_key="inc-1:diagnosis",
    )
    again = record_message(
        migrated_engine,
        incident_id=incident_id,
        kind="note",
        channel_id="C1",
        ts="1.2",
        post_key="inc-1:diagnosis",
    )
    assert again.id == first.id
    assert (again.kind, again.ts) == (SlackMessageKind.DIAGNOSIS, "1.1")  # as first recorded
    assert _count(migrated_engine, SlackMessage) == 1


def test_messages_without_a_post_key_are_never_merged(migrated_engine: sa.Engine) -> None:
    incident_id = _incident(migrated_engine)
    for ts in ("1.1", "1.1", "1.2"):
        record_message(
            migrated_engine, incident_id=incident_id, kind="note", channel_id="C1", ts=ts
        )
    assert _count(migrated_engine, SlackMessage) == 3


def test_a_post_key_of_another_incident_is_refused(migrated_engine: sa.Engine) -> None:
    one, other = _incident(migrated_engine), _incident(migrated_engine)
    record_message(
        migrated_engine, incident_id=one, kind="note", channel_id="C1", ts="1.1", post_key="k"
    )
    with pytest.raises(ValueError, match=f"already recorded for incident {one}, not {other}"):
        record_message(
            migrated_engine, incident_id=other, kind="note", channel_id="C1", ts="1.1", post_key="k"
        )


def test_threads_recording_one_post_key_get_one_row(migrated_engine: sa.Engine) -> None:
    incident_id = _incident(migrated_engine)
    messages = _in_threads(
        6,
        lambda index: record_message(
            migrated_engine,
            incident_id=incident_id,
            kind="progress",
            channel_id="C1",
            ts=f"1.{index}",
            post_key="inc:progress:0",
        ),
    )
    assert len({message.id for message in messages}) == 1
    assert _count(migrated_engine, SlackMessage) == 1


@pytest.mark.parametrize(
    ("fields", "error", "reason"),
    [
        ({"kind": "blocks"}, ValueError, "unknown message kind 'blocks'"),
        ({"channel_id": ""}, ValueError, "channel_id must not be empty"),
        ({"ts": ""}, ValueError, "ts must not be empty"),
        ({"ts": "1\x00"}, ValueError, "NUL"),
        ({"post_key": "k" * 256}, ValueError, "at most 255"),
        ({"incident_id": _MISSING}, IncidentNotFound, f"no incident has id {_MISSING}"),
        ({"proposal_id": _MISSING}, ProposalNotFound, f"no proposal has id {_MISSING}"),
        (
            {"incident_id": _MISSING, "post_key": "k"},
            IncidentNotFound,
            f"no incident has id {_MISSING}",
        ),
    ],
)
def test_record_message_refuses_clearly(
    migrated_engine: sa.Engine, fields: dict[str, Any], error: type[Exception], reason: str
) -> None:
    arguments: dict[str, Any] = {
        "incident_id": _incident(migrated_engine),
        "kind": "proposal",
        "channel_id": "C1",
        "ts": "1.1",
    }
    with pytest.raises(error, match=reason):
        record_message(migrated_engine, **{**arguments, **fields})
    assert _count(migrated_engine, SlackMessage) == 0


def test_a_proposal_message_must_belong_to_the_proposals_incident(
    migrated_engine: sa.Engine,
) -> None:
    one, other = _incident(migrated_engine), _incident(migrated_engine)
    proposal_id = _proposal(migrated_engine, one)
    with pytest.raises(ValueError, match=f"belongs to incident {one}, not {other}"):
        record_message(
            migrated_engine,
            incident_id=other,
            kind="proposal",
            channel_id="C1",
            ts="1.1",
            proposal_id=proposal_id,
        )
    assert _count(migrated_engine, SlackMessage) == 0


def _proposal_message(engine: sa.Engine, incident_id: int, proposal_id: int, ts: str) -> int:
    message = record_message(
        engine,
        incident_id=incident_id,
        kind="proposal",
        channel_id="C1",
        ts=ts,
        proposal_id=proposal_id,
        post_key=f"proposal:{proposal_id}:{ts}",
    )
    assert message.id is not None
    return message.id


def test_proposal_message_is_the_newest_message_with_buttons(migrated_engine: sa.Engine) -> None:
    incident_id = _incident(migrated_engine)
    proposal_id = _proposal(migrated_engine, incident_id)
    assert proposal_message(migrated_engine, proposal_id) is None
    assert proposal_message(migrated_engine, _MISSING) is None
    _proposal_message(migrated_engine, incident_id, proposal_id, "1.1")
    newest = _proposal_message(migrated_engine, incident_id, proposal_id, "1.2")
    record_message(  # a note about the proposal is not its message
        migrated_engine,
        incident_id=incident_id,
        kind="note",
        channel_id="C1",
        ts="1.3",
        proposal_id=proposal_id,
    )
    found = proposal_message(migrated_engine, proposal_id)
    assert found is not None
    assert (found.id, found.ts) == (newest, "1.2")


def test_messages_go_with_their_incident_and_proposal(migrated_engine: sa.Engine) -> None:
    incident_id = _incident(migrated_engine)
    kept, dropped = _proposal(migrated_engine, incident_id), _proposal(migrated_engine, incident_id)
    _proposal_message(migrated_engine, incident_id, kept, "1.1")
    _proposal_message(migrated_engine, incident_id, dropped, "1.2")
    with migrated_engine.begin() as connection:
        connection.execute(sa.delete(Proposal).where(col(Proposal.id) == dropped))
    assert _count(migrated_engine, SlackMessage) == 1
    with migrated_engine.begin() as connection:
        connection.execute(sa.delete(Incident))
    assert _count(migrated_engine, SlackMessage) == 0


# --- pending and settled proposals, mark_message_final ------------------------------------


def test_pending_proposal_messages_are_waiting_proposals_oldest_first(
    migrated_engine: sa.Engine,
) -> None:
    incident_id = _incident(migrated_engine)
    older, approved, newer = (_proposal(migrated_engine, incident_id) for _ in range(3))
    without_message = _proposal(migrated_engine, incident_id)
    rejected = _proposal(migrated_engine, incident_id)
    executing = _proposal(migrated_engine, incident_id)
    for number, proposal_id in enumerate((newer, approved, older, rejected, executing)):
        _proposal_message(migrated_engine, incident_id, proposal_id, f"1.{number}")
    newest_of_older = _proposal_message(migrated_engine, incident_id, older, "2.0")
    with migrated_engine.begin() as connection:
        connection.execute(
            sa.update(Proposal)
            .where(col(Proposal.id).in_([approved, executing]))
            .values(state=ProposalState.APPROVED, approver="U0OK")
        )
    assert reject(migrated_engine, rejected, approver="U0NO")
    assert claim_for_execution(migrated_engine, executing)
    pairs = pending_proposal_messages(migrated_engine)
    assert [proposal.id for proposal, _ in pairs] == [older, approved, newer]
    assert [proposal.state for proposal, _ in pairs] == [
        ProposalState.PENDING,
        ProposalState.APPROVED,
        ProposalState.PENDING,
    ]
    assert pairs[0][1].id == newest_of_older
    assert all(message.proposal_id == proposal.id for proposal, message in pairs)
    assert without_message not in {proposal.id for proposal, _ in pairs}


def test_settled_proposal_messages_are_end_states_not_yet_final(
    migrated_engine: sa.Engine,
) -> None:
    incident_id = _incident(migrated_engine)
    expired = _proposal(migrated_engine, incident_id, ttl=timedelta(seconds=-1))
    stale = _proposal(migrated_engine, incident_id)
    done = _proposal(migrated_engine, incident_id)
    waiting = _proposal(migrated_engine, incident_id)
    for number, proposal_id in enumerate((expired, stale, done, waiting)):
        _proposal_message(migrated_engine, incident_id, proposal_id, f"1.{number}")
    assert settled_proposal_messages(migrated_engine) == []
    assert expire(migrated_engine) == 1
    assert mark_stale(migrated_engine, stale)
    with migrated_engine.begin() as connection:
        connection.execute(
            sa.update(Proposal)
            .where(col(Proposal.id) == done)
            .values(state=ProposalState.EXECUTING)
        )
    assert finish(migrated_engine, done, succeeded=True)
    settled = settled_proposal_messages(migrated_engine)
    assert [(p.id, p.state) for p, _ in settled] == [
        (expired, ProposalState.EXPIRED),
        (stale, ProposalState.STALE),
        (done, ProposalState.DONE),
    ]
    assert {p.state for p, _ in settled} <= set(END_STATES)
    first_message = settled[0][1]
    assert first_message.id is not None
    assert mark_message_final(migrated_engine, first_message.id)
    assert not mark_message_final(migrated_engine, first_message.id)
    assert [p.id for p, _ in settled_proposal_messages(migrated_engine)] == [stale, done]
    assert [p.id for p, _ in pending_proposal_messages(migrated_engine)] == [waiting]


def test_a_repost_makes_a_settled_proposal_need_its_edit_again(
    migrated_engine: sa.Engine,
) -> None:
    incident_id = _incident(migrated_engine)
    proposal_id = _proposal(migrated_engine, incident_id)
    first = _proposal_message(migrated_engine, incident_id, proposal_id, "1.1")
    assert mark_message_final(migrated_engine, first)
    assert reject(migrated_engine, proposal_id, approver="U0NO")
    assert settled_proposal_messages(migrated_engine) == []
    repost = _proposal_message(migrated_engine, incident_id, proposal_id, "1.2")
    assert [m.id for _, m in settled_proposal_messages(migrated_engine)] == [repost]


def test_mark_message_final_of_an_unknown_message_is_false(migrated_engine: sa.Engine) -> None:
    assert not mark_message_final(migrated_engine, _MISSING)


def test_replicas_sweeping_together_edit_each_expired_message_once(
    migrated_engine: sa.Engine,
) -> None:
    incident_id = _incident(migrated_engine)
    proposals = [
        _proposal(migrated_engine, incident_id, ttl=timedelta(seconds=-1)) for _ in range(15)
    ]
    for proposal_id in proposals:
        _proposal_message(migrated_engine, incident_id, proposal_id, f"1.{proposal_id}")

    def sweep(_: int) -> list[int]:
        expire(migrated_engine)
        edited = []
        for _proposal_row, message in settled_proposal_messages(migrated_engine):
            assert message.id is not None
            if mark_message_final(migrated_engine, message.id):
                edited.append(message.id)  # here the bot would chat.update it
        return edited

    edits = [message_id for edited in _in_threads(5, sweep) for message_id in edited]
    assert len(edits) == len(set(edits)) == len(proposals)
    assert settled_proposal_messages(migrated_engine) == []


# --- mark_interrupted, close_incident -----------------------------------------------------


@pytest.mark.parametrize("status", [IncidentStatus.OPEN, IncidentStatus.INVESTIGATING])
def test_a_running_investigation_is_interrupted_once(
    migrated_engine: sa.Engine, status: IncidentStatus
) -> None:
    incident_id = _incident(migrated_engine, status=status)
    assert mark_interrupted(migrated_engine, incident_id, "the bot restarted")
    assert not mark_interrupted(migrated_engine, incident_id, "the bot restarted again")
    incident = _load_incident(migrated_engine, incident_id)
    assert incident.status is IncidentStatus.INTERRUPTED
    assert incident.closed_at is None
    outcomes = _outcomes(migrated_engine, incident_id)
    assert [(o.source, o.notes, o.resolved, o.labelled_by) for o in outcomes] == [
        ("bot", "the bot restarted", False, "")
    ]
    with migrated_engine.connect() as connection:
        raw = connection.execute(sa.text("SELECT status FROM incidents")).scalar_one()
    assert raw == "INTERRUPTED"


@pytest.mark.parametrize(
    "status",
    [
        IncidentStatus.DIAGNOSED,
        IncidentStatus.MITIGATED,
        IncidentStatus.CLOSED,
        IncidentStatus.FAILED,
        IncidentStatus.INTERRUPTED,
    ],
)
def test_a_finished_investigation_is_not_interrupted(
    migrated_engine: sa.Engine, status: IncidentStatus
) -> None:
    incident_id = _incident(migrated_engine, status=status)
    assert not mark_interrupted(migrated_engine, incident_id, "restart")
    assert _load_incident(migrated_engine, incident_id).status is status
    assert _outcomes(migrated_engine, incident_id) == []


def test_interrupting_or_closing_an_unknown_incident_is_false(migrated_engine: sa.Engine) -> None:
    assert not mark_interrupted(migrated_engine, _MISSING, "restart")
    assert not close_incident(migrated_engine, _MISSING, by="U0ALICE", cause="dns")
    assert _count(migrated_engine, Outcome) == 0


def test_threads_interrupting_one_incident_have_one_winner(migrated_engine: sa.Engine) -> None:
    incident_id = _incident(migrated_engine)
    wins = _in_threads(6, lambda n: mark_interrupted(migrated_engine, incident_id, f"r{n}"))
    assert sum(wins) == 1
    assert len(_outcomes(migrated_engine, incident_id)) == 1


def test_close_incident_closes_once_with_a_resolved_outcome(migrated_engine: sa.Engine) -> None:
    incident_id = _incident(migrated_engine, status=IncidentStatus.INTERRUPTED)
    assert close_incident(migrated_engine, incident_id, by="U0ALICE", cause="bad config rollout")
    assert not close_incident(migrated_engine, incident_id, by="U0BOB", cause="something else")
    incident = _load_incident(migrated_engine, incident_id)
    assert incident.status is IncidentStatus.CLOSED
    assert incident.closed_at is not None
    assert incident.closed_at.tzinfo is not None
    outcomes = _outcomes(migrated_engine, incident_id)
    assert [(o.source, o.resolved, o.notes, o.labelled_by) for o in outcomes] == [
        ("slack_resolved", True, "bad config rollout", "U0ALICE")
    ]


def test_threads_closing_one_incident_have_one_winner(migrated_engine: sa.Engine) -> None:
    incident_id = _incident(migrated_engine)
    wins = _in_threads(
        6, lambda n: close_incident(migrated_engine, incident_id, by=f"U{n}", cause="dns")
    )
    assert sum(wins) == 1
    assert len(_outcomes(migrated_engine, incident_id)) == 1


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"by": ""}, "by must not be empty"),
        ({"cause": "x" * 20_001}, "at most 20000"),
        ({"cause": "\x00"}, "NUL"),
    ],
)
def test_close_incident_refuses_malformed_text(
    migrated_engine: sa.Engine, fields: dict[str, str], reason: str
) -> None:
    incident_id = _incident(migrated_engine)
    with pytest.raises(ValueError, match=reason):
        close_incident(migrated_engine, incident_id, **{"by": "U1", "cause": "dns", **fields})
    assert _load_incident(migrated_engine, incident_id).status is IncidentStatus.INVESTIGATING


# --- record_label -------------------------------------------------------------------------


def test_record_label_keeps_a_persons_verdict(migrated_engine: sa.Engine) -> None:
    incident_id = _incident(migrated_engine)
    label = {"component": "payment-service", "system_level": "application", "fault_type": "oom"}
    outcome = record_label(
        migrated_engine,
        incident_id,
        by="U0ALICE",
        source="slack_feedback",
        correct=False,
        root_cause=label,
        notes="it was the memory limit",
    )
    assert outcome.id is not None
    stored = _outcomes(migrated_engine, incident_id)
    assert [
        (o.id, o.root_cause, o.correct, o.source, o.labelled_by, o.resolved) for o in stored
    ] == [(outcome.id, label, False, "slack_feedback", "U0ALICE", False)]
    assert stored[0].notes == "it was the memory limit"


def test_record_label_accepts_a_partial_or_empty_label(migrated_engine: sa.Engine) -> None:
    incident_id = _incident(migrated_engine)
    partial = record_label(
        migrated_engine,
        incident_id,
        by="U1",
        source="console",
        correct=None,
        root_cause={"component": "db"},
    )
    empty = record_label(
        migrated_engine, incident_id, by="U1", source="lab", correct=True, root_cause={}
    )
    assert (partial.root_cause, empty.root_cause) == ({"component": "db"}, None)


@pytest.mark.parametrize(
    ("fields", "error", "reason"),
    [
        ({"root_cause": {"service": "x"}}, ValueError, "unknown key"),
        ({"root_cause": {"component": 3}}, ValueError, "must be a string, not int"),
        ({"root_cause": {"fault_type": "f" * 201}}, ValueError, "at most 200"),
        ({"root_cause": ["component"]}, ValueError, "must be a mapping"),
        ({"source": "slack"}, ValueError, "unknown outcome source 'slack'"),
        ({"correct": 1}, ValueError, "correct must be True, False or None"),
        ({"notes": "n\x00"}, ValueError, "NUL"),
        ({"notes": "n" * 20_001}, ValueError, "at most 20000"),
        ({"by": ""}, ValueError, "by must not be empty"),
        ({"incident_id": _MISSING}, IncidentNotFound, f"no incident has id {_MISSING}"),
    ],
)
def test_record_label_refuses_clearly(
    migrated_engine: sa.Engine, fields: dict[str, Any], error: type[Exception], reason: str
) -> None:
    arguments: dict[str, Any] = {
        "incident_id": _incident(migrated_engine),
        "by": "U1",
        "source": "slack_feedback",
        "correct": True,
        "root_cause": {"component": "db"},
        **fields,
    }
    incident_id = arguments.pop("incident_id")
    with pytest.raises(error, match=reason):
        record_label(migrated_engine, incident_id, **arguments)
    assert _count(migrated_engine, Outcome) == 0


_LABEL_TEXT = st.text(_TEXT, max_size=200)


@_EXAMPLES
@given(
    root_cause=st.dictionaries(
        st.sampled_from(["component", "system_level", "fault_type"]), _LABEL_TEXT
    ),
    notes=st.text(_TEXT, max_size=300),
    correct=st.sampled_from([True, False, None]),
)
def test_any_well_formed_label_round_trips(
    migrated_engine: sa.Engine, root_cause: dict[str, str], notes: str, correct: bool | None
) -> None:
    incident_id = _incident(migrated_engine)
    outcome = record_label(
        migrated_engine,
        incident_id,
        by="U1",
        source="slack_feedback",
        correct=correct,
        root_cause=root_cause,
        notes=notes,
    )
    (stored,) = _outcomes(migrated_engine, incident_id)
    assert stored.id == outcome.id
    assert (stored.root_cause, stored.notes, stored.correct) == (root_cause or None, notes, correct)


# --- the migration ------------------------------------------------------------------------


def test_0004_gives_older_outcomes_an_empty_source_and_downgrades_cleanly(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine, revision="0003")
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO incidents (team_id, channel_id, thread_ts, requester, question, "
                    "cluster, status, created_at, updated_at) VALUES ('', 'C1', '1.1', '', 'q', "
                    "'', 'INVESTIGATING', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
            connection.execute(
                sa.text(
                    "INSERT INTO outcomes (incident_id, resolved, notes, created_at) "
                    "SELECT id, TRUE, 'graded by the lab', CURRENT_TIMESTAMP FROM incidents"
                )
            )
        upgrade(engine)
        assert schema_drift(engine) == []
        incident = thread_incident(engine, "C1", "1.1")
        assert incident is not None
        assert incident.id is not None
        (older,) = _outcomes(engine, incident.id)
        assert (older.source, older.labelled_by, older.notes) == ("", "", "graded by the lab")
        assert mark_interrupted(engine, incident.id, "restart")
        assert claim_event(engine, "Ev1", kind="k")

        _downgrade(engine, "0003")
        assert current_revision(engine) == "0003"
        tables = set(sa.inspect(engine).get_table_names())
        assert not tables & {"slack_events", "slack_messages"}
        with engine.connect() as connection:
            status = connection.execute(sa.text("SELECT status FROM incidents")).scalar_one()
        assert status == "FAILED"  # a status the older release knows
        upgrade(engine)
        assert schema_drift(engine) == []
    finally:
        engine.dispose()


def _downgrade(engine: sa.Engine, revision: str) -> None:
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def test_the_post_key_index_is_partial_and_unique(migrated_engine: sa.Engine) -> None:
    indexes = {i["name"]: i for i in sa.inspect(migrated_engine).get_indexes("slack_messages")}
    assert indexes["uq_slack_messages_post_key"]["unique"]
    assert indexes["ix_slack_messages_proposal_id"]["column_names"] == ["proposal_id"]
    constraints = sa.inspect(migrated_engine).get_unique_constraints("slack_events")
    assert [c["name"] for c in constraints] == ["uq_slack_events_event_id"]
