"""What a write brings (new sessions, turns and events), and the rows a batch of new sessions
makes, figures included (their columns are the declared fields', models/fields.py): built
here once, for the one writer (models/recording.py)."""

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from operator import attrgetter

from sessiongraph.models.fields import FIELDS, stored
from sessiongraph.models.search_text import fold, fold_content


@dataclass(slots=True)
class NewEvent:
    type: str
    timestamp: datetime
    agent_id: str | None = None
    content: bytes | None = None
    payload: object = None
    dedup_key: str | None = None
    # SQLite's text of `timestamp` ("2025-01-01 06:00:00.000000"), when the importer read it
    # in the form that text is cut from; else None. Not compared: the same event either way.
    sqlite_timestamp: str | None = field(default=None, compare=False)

    @property
    def search_text(self) -> str | None:
        return fold_content(self.content)


@dataclass(slots=True)
class NewTurn:
    task_id: str
    created_at: datetime
    workflow_id: str | None = None
    user_query: str | None = None
    result: str | None = None
    status: str = "COMPLETED"
    completed_at: datetime | None = None
    tokens_used: int = 0
    duration_ms: int | None = None
    cost_usd_micros: int | None = None
    endpoint: str | None = None
    prepared_prompt: str | None = None
    red_team_settings: dict | None = None
    events: list[NewEvent] = field(default_factory=list)

    @property
    def search_query(self) -> str | None:
        return fold(self.user_query)

    @property
    def search_result(self) -> str | None:
        return fold(self.result)


@dataclass(slots=True)
class NewSession:
    org_id: uuid.UUID
    user_id: uuid.UUID
    created_at: datetime
    session_id: uuid.UUID | None = None
    external_id: str | None = None
    title: str | None = None
    token_budget: int | None = None
    metadata: dict = field(default_factory=dict)
    kind: str = "AGENT"
    status: str = "OPEN"  # READY becomes OPEN when the session comes with turns or events
    ended_at: datetime | None = None  # a DONE session without one ended at its last activity
    batch_id: str | None = None
    correlation_id: str | None = None
    identity_type: str = "USER"
    # TERMINAL sessions (the columns of models/fields.TERMINAL_FIELDS, RESOURCE_FIELDS,
    # REVIEW_FIELDS; JSON details as stored: snake_case objects)
    verb: str | None = None
    exit_code: int | None = None
    terminal_input: str | None = None
    input_size: int = 0
    terminal_columns: int | None = None
    terminal_rows: int | None = None
    user_email: str | None = None
    user_display_name: str | None = None
    user_subject: str | None = None
    machine_identity_id: str | None = None
    data_masking: dict | None = None
    guardrails: list = field(default_factory=list)
    ai_analysis: object = None
    resource_name: str | None = None
    resource_type: str | None = None
    resource_subtype: str | None = None
    resource_resource_name: str | None = None
    resource_tags: dict | None = None
    review_status: str | None = None
    review_created_at: datetime | None = None
    review_decisions: list | None = None
    # RED_TEAM sessions
    runner_id: str | None = None
    endpoints: list | None = None
    red_team_settings: dict | None = None
    turns: list[NewTurn] = field(default_factory=list)
    events: list[NewEvent] = field(default_factory=list)

    @property
    def search_title(self) -> str | None:
        return fold(self.title)


@dataclass(slots=True)
class Stored:
    session_id: uuid.UUID
    created: bool
    turns: int
    events: int


def batch_keys(news: list[NewSession]) -> tuple[list, list] | None:
    """The session ids and (user, external id) pairs that `news` names, which must all be
    free for them to be stored as new; None when one is there twice (not that simple case)."""
    ids = [n.session_id for n in news if n.session_id is not None]
    owned = [(n.user_id, n.external_id) for n in news if n.external_id is not None]
    if len(set(ids)) != len(ids) or len(set(owned)) != len(owned):
        return None
    return ids, owned


def new_users(news: list[NewSession], known: dict) -> list[dict] | None:
    """The user rows to add for `news`, given the organisation of each user `known` so far:
    a user never seen joins the organisation of its first session, on that session's
    creation time, as `ensure_user` has it line by line. None when a session's user belongs
    to another organisation (that line is rejected: not the simple case)."""
    orgs, rows = dict(known), []
    for n in news:
        if n.user_id not in orgs:
            orgs[n.user_id] = n.org_id
            rows.append({"id": n.user_id, "org_id": n.org_id, "created_at": n.created_at})
        elif orgs[n.user_id] != n.org_id:
            return None
    return rows


@dataclass(slots=True)
class SessionRows:
    """The rows of new sessions. The events' own columns, and those they take from their
    session and turn, are gathered column by column: a tuple or dictionary per event costs
    more than its insert."""

    sessions: list[dict] = field(default_factory=list)
    turns: list[dict] = field(default_factory=list)
    events: list[NewEvent] = field(default_factory=list)
    session_ids: list = field(default_factory=list)  # of each event
    workflow_ids: list = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    runs: list[tuple[uuid.UUID, int | None, int]] = field(default_factory=list)  # (session, turn position, events)
    stored: list[Stored] = field(default_factory=list)

    def event_turn_ids(self, turn_ids: dict) -> list:
        """Each event's turn id, given the new turns' ids by (session, position)."""
        ids: list = []
        for session_id, position, count in self.runs:
            ids += [None if position is None else turn_ids[session_id, position]] * count
        return ids


def new_session_rows(news: list[NewSession]) -> SessionRows:
    """New sessions' rows, their figures, and each turn's, worked out from what is being
    stored, as the incremental writers would have kept them. Seqs: a session's own events,
    then each turn's."""
    rows = SessionRows()
    for new in news:
        session_id = new.session_id or uuid.uuid4()
        turns = unique_tasks(new.turns)
        count = len(new.events) + sum(len(t.events) for t in turns)
        turn_times = [max(t.created_at, t.completed_at or t.created_at) for t in turns]
        updated_at = max([new.created_at, *turn_times])
        last_activity_at = max(chain([updated_at], map(_timestamp, new.events), *(map(_timestamp, t.events) for t in turns)))
        rows.sessions.append(stored_row("Session", new, {
            "id": session_id,
            "updated_at": updated_at,
            "last_activity_at": last_activity_at,
            "turn_count": len(turns),
            "tokens_used": sum(t.tokens_used for t in turns),
            "event_count": count,
            "cost_usd_micros": turns_cost(turns),
            "stream_size": stream_bytes(new.events) + sum(stream_bytes(t.events) for t in turns),
            "guardrail_count": len(new.guardrails),
            "status": "OPEN" if new.status == "READY" and count + len(turns) else new.status,
            "ended_at": new.ended_at or (last_activity_at if new.status == "DONE" else None),
        }))
        rows.turns += [turn_row(session_id, position, t) for position, t in enumerate(turns, start=1)]
        rows.events += new.events
        rows.workflow_ids += [None] * len(new.events)
        rows.runs.append((session_id, None, len(new.events)))
        for position, t in enumerate(turns, start=1):
            rows.events += t.events
            rows.workflow_ids += [t.workflow_id] * len(t.events)
            rows.runs.append((session_id, position, len(t.events)))
        rows.session_ids += [session_id] * count
        rows.seqs += range(1, count + 1)
        rows.stored.append(Stored(session_id, True, len(turns), count))
    return rows


_timestamp = attrgetter("timestamp")


def turn_row(session_id: uuid.UUID, position: int, turn: NewTurn) -> dict:
    """A new turn's row, its figures worked out from the events it comes with."""
    return stored_row("Turn", turn, {
        "session_id": session_id,
        "position": position,
        "fallback_output": fallback_output(turn.events),
        "agents": sorted({e.agent_id for e in turn.events if e.agent_id}),
    })


def stored_row(type_name: str, given, figures: dict) -> dict:
    """A new row of `type_name`'s table, by column: each column's value from `figures`
    (what the writer works out), else as `given` has it (an attribute named as the column),
    else its declared default. A field added to the declarations is written without a
    change here."""
    row = {}
    for f in _STORED[type_name]:
        name = f.column_name
        if name in figures:
            value = figures[name]
        elif hasattr(given, name):
            value = getattr(given, name)
        else:
            default = f.stored.default
            value = default() if callable(default) else default
        row[name] = value
    return row


_STORED = {name: tuple(f for f in stored(name) if not f.stored.primary_key) for name in FIELDS}
_STORED["Session"] = stored("Session")  # its id is chosen, not generated


# The event types whose content counts in a session's stream size (a terminal's streams).
STREAM_TYPES = frozenset({"INPUT", "OUTPUT", "ERROR"})


def stream_bytes(events: list[NewEvent]) -> int:
    """The bytes of `events`' INPUT, OUTPUT and ERROR contents."""
    return sum(len(e.content) for e in events if e.content is not None and e.type in STREAM_TYPES)


def turns_cost(turns: list[NewTurn]) -> int:
    """The turns' costs in millionths of a dollar, those not reported counting 0."""
    return sum(t.cost_usd_micros or 0 for t in turns)


def fallback_output(events: list[NewEvent]) -> str | None:
    """The message of the first non-blank LLM_OUTPUT among `events`."""
    return next(
        (
            message
            for e in events
            if e.type == "LLM_OUTPUT" and e.content is not None
            and (message := e.content.decode("utf-8", "replace")).strip()
        ),
        None,
    )


def unique_tasks(turns: list[NewTurn]) -> list[NewTurn]:
    seen: set[str] = set()
    return [t for t in turns if not (t.task_id in seen or seen.add(t.task_id))]
