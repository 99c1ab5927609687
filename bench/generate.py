"""Writes the bench's data set in the contract's JSON Lines import format: N sessions of
T turns of E events each, plus one long session of L session-level events.

Everything belongs to one user of one organisation, so that user's key sees exactly what
PostGraphile (which has no notion of our visibility) lists. The long session is the oldest,
so it sits at the end of the session list and never changes the nested page's shape. No
LLM_PARTIAL event is generated: the server leaves those out by default and PostGraphile
has no equivalent filter, so both serve the same rows. The output is deterministic.
"""

import argparse
import uuid
from datetime import UTC, datetime, timedelta

import orjson

ORG = uuid.UUID("00000000-0000-4000-8000-00000000b0b0")
USER = uuid.UUID("00000000-0000-4000-8000-0000000000a1")
LONG_SESSION = uuid.UUID("00000000-0000-4000-8000-00000000f00d")
T0 = datetime(2025, 1, 1, tzinfo=UTC)
EVENT_TYPES = ("LLM_PROMPT", "TOOL_INVOKED", "TOOL_RESULT", "LLM_OUTPUT")
AGENTS = ("planner", "researcher", "writer")


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event(i: int, at: datetime) -> dict:
    kind = EVENT_TYPES[i % len(EVENT_TYPES)]
    return {
        "type": kind,
        "agent_id": AGENTS[i % len(AGENTS)],
        "message": f"{kind.lower()} {i}: " + "lorem ipsum dolor sit amet " * 3,
        "timestamp": stamp(at),
        "payload": {"step": i, "model": "small"},
    }


def session_line(n: int, turns: int, events: int) -> dict:
    created = T0 + timedelta(days=1, minutes=n)
    return {
        "session_id": str(uuid.UUID(int=(1 << 64) | n, version=4)),
        "external_id": f"bench-{n}",
        "org_id": str(ORG),
        "user_id": str(USER),
        "title": f"Bench session {n}",
        "created_at": stamp(created),
        "token_budget": 100_000,
        "metadata": {"team": "bench", "n": n},
        "turns": [
            {
                "task_id": f"task-{t}",
                "workflow_id": f"wf-{n}-{t}",
                "user_query": f"Question {t} of session {n}?",
                "result": f"Answer {t}.",
                "status": "COMPLETED",
                "created_at": stamp(created + timedelta(seconds=10 * t)),
                "completed_at": stamp(created + timedelta(seconds=10 * t + 8)),
                "tokens_used": 100 + t,
                "duration_ms": 8000,
                "events": [
                    event(e, created + timedelta(seconds=10 * t, milliseconds=100 * e)) for e in range(events)
                ],
            }
            for t in range(turns)
        ],
    }


def long_session_line(events: int) -> dict:
    return {
        "session_id": str(LONG_SESSION),
        "external_id": "bench-long",
        "org_id": str(ORG),
        "user_id": str(USER),
        "title": "Bench long session",
        "created_at": stamp(T0),
        "events": [event(e, T0 + timedelta(milliseconds=10 * e)) for e in range(events)],
    }


def write(path: str, sessions: int, turns: int, events: int, long_events: int) -> int:
    """Writes the file; returns the number of events in it."""
    with open(path, "wb") as out:
        out.write(orjson.dumps(long_session_line(long_events)) + b"\n")
        for n in range(sessions):
            out.write(orjson.dumps(session_line(n, turns, events)) + b"\n")
    return sessions * turns * events + long_events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--events", type=int, default=10)
    parser.add_argument("--long-events", type=int, default=100_000)
    args = parser.parse_args()
    total = write(args.output, args.sessions, args.turns, args.events, args.long_events)
    print(f"wrote {args.sessions + 1} sessions, {total} events to {args.output}")


if __name__ == "__main__":
    main()


# The filtered list page's data set (bench/run.py --filtered-list): every other generated
# session made a TERMINAL one, through columns the importer does not know yet, by SQL after
# the import: ten connections (res-0 .. res-9), the four review statuses, three teams in
# its metadata. Session n is the line of external id bench-n.
FILTERED = {
    "kinds": ["TERMINAL"],
    "resourceNames": ["res-1", "res-2"],
    "reviewStatuses": ["APPROVED"],
    "metadata": {"team": "banking"},
}


def terminal_sql(dialect: str) -> str:
    """The UPDATE that makes the even sessions TERMINAL ones, on `dialect`."""
    json_object = "jsonb_build_object" if dialect == "postgresql" else "json_object"
    return f"""
UPDATE sessions SET kind = 'TERMINAL', verb = 'EXEC', resource_type = 'database',
  resource_name = 'res-' || ((numbered.n / 2) % 10),
  review_status = CASE (numbered.n / 20) % 4 WHEN 0 THEN 'PENDING' WHEN 1 THEN 'APPROVED'
                  WHEN 2 THEN 'REJECTED' ELSE 'REVOKED' END,
  metadata = {json_object}('team', CASE numbered.n % 3 WHEN 0 THEN 'banking' WHEN 1 THEN 'retail' ELSE 'ops' END,
                           'n', numbered.n)
FROM (SELECT id AS sid, CAST(substr(external_id, 7) AS INTEGER) AS n FROM sessions
      WHERE external_id LIKE 'bench-%' AND external_id <> 'bench-long') AS numbered
WHERE sessions.id = numbered.sid AND numbered.n % 2 = 0"""
