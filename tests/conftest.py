"""Fixtures: a fresh migrated database per backend (SQLite always, PostgreSQL where
SESSIONGRAPH_TEST_POSTGRES_URL is set), emptied after every test; callers; a way to
execute documents against the schema and to count the SQL statements they cost."""

import contextlib
import os
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import bindparam, event, text, update

from sessiongraph.transport.app import create_app
from sessiongraph.gate.auth import create_key
from sessiongraph.config import Settings
from sessiongraph.migrations import upgrade_async
from sessiongraph.models import Base, Session, Turn, create_engine
from sessiongraph.models.database import scratch_postgres_database
from sessiongraph.models.search import QUEUE_TABLE
from sessiongraph.models.recording import NewEvent, NewSession, NewTurn, ensure_user, store_session
from sessiongraph.live.broker import broker_for
from sessiongraph.planner.errors import PlannerBug
from sessiongraph.resolvers.context import RequestContext, Viewer
from sessiongraph.schema import schema

POSTGRES_URL = os.environ.get("SESSIONGRAPH_TEST_POSTGRES_URL")
T0 = datetime(2025, 10, 28, 6, 0, tzinfo=UTC)

BACKENDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(
            not POSTGRES_URL,
            reason="SESSIONGRAPH_TEST_POSTGRES_URL is not set: no PostgreSQL server to test against",
        ),
    ),
]


@contextlib.asynccontextmanager
async def fresh_database(backend: str, revision: str = "head"):
    """A new database of `backend`, migrated to `revision`; dropped afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            url = f"sqlite+aiosqlite:///{directory}/test.db"
            await upgrade_async(url, revision)
            yield url
        return
    async with scratch_postgres_database(POSTGRES_URL, "sessiongraph_test") as url:
        await upgrade_async(url, revision)
        yield url


def pytest_configure(config):
    config.addinivalue_line("markers", "planner_bugs(n): the test makes the planner fail unexpectedly n times, on purpose")


@pytest.fixture(autouse=True)
def no_planner_bug(request):
    """Every test fails when a plan failed unexpectedly while it ran (planner/errors.py): such
    a failure is answered by graphql-core all the same, and would otherwise go unnoticed."""
    before = PlannerBug.count
    yield
    marker = request.node.get_closest_marker("planner_bugs")
    expected = marker.args[0] if marker else 0
    assert PlannerBug.count - before == expected, "the planner failed unexpectedly; its log line names the error"


@pytest.fixture(scope="session", params=BACKENDS)
async def database_url(request):
    async with fresh_database(request.param) as url:
        yield url


@pytest.fixture(scope="session")
async def session_engine(database_url):
    engine = create_engine(database_url)
    yield engine
    await broker_for(engine).close()  # its LISTEN connection back to the pool before the pool closes
    await engine.dispose()


@pytest.fixture
async def engine(session_engine):
    """The test's database engine; every table is emptied after the test."""
    yield session_engine
    async with session_engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(table.delete())
        # The search's queue is made by a migration, not declared (the index's rows go with
        # their events: a foreign key on PostgreSQL, triggers on SQLite).
        await connection.execute(text(f"DELETE FROM {QUEUE_TABLE}"))


@dataclass
class Org:
    """An organisation with an ADMIN and two USERs (alice, bob)."""

    id: uuid.UUID
    admin: Viewer
    alice: Viewer
    bob: Viewer


async def make_org(engine) -> Org:
    org_id = uuid.uuid4()
    viewers = [
        Viewer(uuid.uuid4(), org_id, "ADMIN", "USER"),
        Viewer(uuid.uuid4(), org_id, "USER", "USER"),
        Viewer(uuid.uuid4(), org_id, "USER", "USER"),
    ]
    async with engine.begin() as connection:
        for viewer in viewers:
            await ensure_user(connection, viewer.user_id, org_id, T0)
    return Org(org_id, *viewers)


@pytest.fixture
async def org(engine) -> Org:
    return await make_org(engine)


@pytest.fixture
async def other_org(engine) -> Org:
    return await make_org(engine)


def event_(type_: str, minutes: float, message: str | bytes | None = None, agent: str | None = None, **kw) -> NewEvent:
    content = message.encode() if isinstance(message, str) else message
    return NewEvent(type=type_, timestamp=T0 + timedelta(minutes=minutes), agent_id=agent, content=content, **kw)


def turn_(task_id: str, minutes: float, events=(), **kw) -> NewTurn:
    return NewTurn(task_id=task_id, created_at=T0 + timedelta(minutes=minutes), events=list(events), **kw)


async def store(engine, owner: Viewer, minutes: float = 0, turns=(), events=(), **kw) -> uuid.UUID:
    """Stores a session of `owner` created `minutes` after T0; returns its id."""
    new = NewSession(
        org_id=owner.org_id,
        user_id=owner.user_id,
        created_at=T0 + timedelta(minutes=minutes),
        turns=list(turns),
        events=list(events),
        **kw,
    )
    async with engine.begin() as connection:
        return (await store_session(connection, new)).session_id


async def store_red_team(
    engine, owner: Viewer, minutes: float = 0, endpoints=("gpt", "claude", "llama"), rounds: int = 2,
    settings: dict | None = None, runner_id: str | None = None, **kw,
) -> uuid.UUID:
    """Stores a RED_TEAM session of `owner`: `rounds` prompts, each sent to every endpoint in
    turn (turn k of round r goes to endpoint k), with `settings`; returns its id. Written as
    the writers would, the new columns set directly (createSession with redTeam comes later)."""
    turns = [
        turn_(f"r{r}-{endpoint}", minutes + r + k / 100, user_query=f"prompt {r}", result=f"{endpoint} answers {r}")
        for r in range(rounds)
        for k, endpoint in enumerate(endpoints)
    ]
    session_id = await store(engine, owner, minutes, turns=turns, **kw)
    async with engine.begin() as connection:
        await connection.execute(
            update(Session)
            .where(Session.id == session_id)
            .values(kind="RED_TEAM", runner_id=runner_id or f"runner-{session_id.hex[:8]}", endpoints=list(endpoints), red_team_settings=settings)
        )
        if turns:
            await connection.execute(
                update(Turn)
                .where(Turn.session_id == bindparam("s"), Turn.position == bindparam("p"))
                .values(endpoint=bindparam("e"), prepared_prompt=bindparam("pp"), red_team_settings=bindparam("rs"), cost_usd_micros=bindparam("c")),
                [
                    {"s": session_id, "p": i + 1, "e": endpoints[i % len(endpoints)], "pp": f"[{endpoints[i % len(endpoints)]}] {t.user_query}",
                     "rs": settings, "c": 1250 * (i + 1)}
                    for i, t in enumerate(turns)
                ],
            )
    return session_id


async def store_terminal(engine, owner: Viewer, minutes: float = 0, events=(), details: dict | None = None, **kw) -> uuid.UUID:
    """Stores a TERMINAL session of `owner` with `details` (columns of the session's row, e.g.
    verb, resource_name, review_status); returns its id."""
    session_id = await store(engine, owner, minutes, events=events, **kw)
    values = {"verb": "EXEC", "resource_name": "pgdemo", "resource_type": "database", **(details or {})}
    async with engine.begin() as connection:
        await connection.execute(update(Session).where(Session.id == session_id).values(kind="TERMINAL", **values))
    return session_id


class StatementCounter:
    def __init__(self) -> None:
        self.statements: list[str] = []

    def __call__(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self.statements.append(statement)

    @property
    def count(self) -> int:
        return len(self.statements)


@contextlib.contextmanager
def count_statements(engine):
    """Counts the SQL statements `engine` sends inside the block."""
    counter = StatementCounter()
    event.listen(engine.sync_engine, "before_cursor_execute", counter)
    try:
        yield counter
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", counter)


@pytest.fixture(params=["planner", "resolvers"])
def both_executions(request, monkeypatch):
    """Runs a test as the server runs (the planner answers what it covers) and again with the
    planner off, so that the resolvers alone are held to the same rules."""
    if request.param == "resolvers":
        monkeypatch.setitem(globals(), "schema", schema.configured(schema.limits, schema.introspection, planner=False))


async def execute(engine, viewer: Viewer, query: str, variables: dict | None = None, operation_name=None):
    """Executes a document as `viewer` against the schema, as the HTTP layer does."""
    context = RequestContext(engine, viewer)
    try:
        return await schema.execute(query, variable_values=variables, context_value=context, operation_name=operation_name)
    finally:
        await context.close()


async def ok(engine, viewer: Viewer, query: str, variables: dict | None = None) -> dict:
    """The data of a document that must execute without errors."""
    result = await execute(engine, viewer, query, variables)
    assert result.errors is None, result.errors
    return result.data


async def error_codes(engine, viewer: Viewer, query: str, variables: dict | None = None) -> list[str]:
    result = await execute(engine, viewer, query, variables)
    assert result.errors, "expected errors"
    return [e.extensions["code"] for e in result.errors]


@pytest.fixture
async def client(engine):
    """An HTTP client for the app on the test's database."""
    app = create_app(Settings(database_url=str(engine.url)), engine=engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http


async def api_key(engine, viewer: Viewer, machine: bool = False) -> str:
    _, key = await create_key(engine, viewer.org_id, viewer.user_id, viewer.role, machine)
    return key
