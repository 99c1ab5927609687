"""Migrations: a database made before a revision, with data in it, is brought forward and
reads as the revision says; a migrated database has exactly the tables, columns and indexes
the models declare (models/fields.py, models/tables.py)."""

import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from sessiongraph.migrations import upgrade_async
from sessiongraph.models import Base, create_engine
from sessiongraph.models.search import is_index_table
from sessiongraph.resolvers.context import Viewer
from tests.conftest import BACKENDS, T0, execute, fresh_database

pytestmark = pytest.mark.parametrize("backend", BACKENDS)


def _differences(connection) -> list:
    # The search index and its queue are made by migrations, not declared tables (on SQLite
    # a virtual table and its shadow tables).
    declared = {"include_name": lambda name, kind, _parents: not (kind == "table" and is_index_table(name))}
    return compare_metadata(MigrationContext.configure(connection, opts=declared), Base.metadata)


async def test_a_migrated_database_is_what_the_models_declare(backend):
    async with fresh_database(backend) as url:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                assert await connection.run_sync(_differences) == []
        finally:
            await engine.dispose()


async def test_sessions_stored_before_session_kinds_become_open_agent_sessions(backend):
    org, user, session = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with fresh_database(backend, "0001") as url:
        engine = create_engine(url)
        try:
            # Rows as a server before revision 0002 wrote them.
            ids = (lambda u: u.hex) if backend == "sqlite" else (lambda u: u)
            at = "2025-10-28 06:00:00.000000" if backend == "sqlite" else T0
            async with engine.begin() as connection:
                await connection.execute(text("INSERT INTO users (id, org_id, created_at) VALUES (:u, :o, :t)"), {"u": ids(user), "o": ids(org), "t": at})
                await connection.execute(
                    text(
                        "INSERT INTO sessions (id, org_id, user_id, external_id, title, metadata, created_at, updated_at,"
                        " last_activity_at, turn_count, tokens_used, event_count)"
                        " VALUES (:s, :o, :u, 'old-chat', 'Before', '{\"team\": \"a\"}', :t, :t, :t, 1, 150, 0)"
                    ),
                    {"s": ids(session), "o": ids(org), "u": ids(user), "t": at},
                )
                await connection.execute(
                    text(
                        "INSERT INTO turns (session_id, position, task_id, status, created_at, tokens_used, agents, result)"
                        " VALUES (:s, 1, 'task-1', 'COMPLETED', :t, 150, '[]', '4')"
                    ),
                    {"s": ids(session), "t": at},
                )
            await upgrade_async(url)
            viewer = Viewer(user, org, "USER", "USER")
            result = await execute(
                engine,
                viewer,
                """{ session(id: "old-chat") { title kind status endedAt identityType costUsd orgId batchId
                     terminal { verb } redTeam { runnerId } turns { nodes { finalOutput costUsd endpoint redTeamSettings { metric } } } } }""",
            )
            assert result.errors is None
            assert result.data == {"session": {
                "title": "Before", "kind": "AGENT", "status": "OPEN", "endedAt": None, "identityType": "USER",
                "costUsd": 0.0, "orgId": str(org), "batchId": None, "terminal": None, "redTeam": None,
                "turns": {"nodes": [{"finalOutput": "4", "costUsd": None, "endpoint": None, "redTeamSettings": None}]},
            }}
        finally:
            await engine.dispose()
