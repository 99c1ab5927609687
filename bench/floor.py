"""The floor: the nested page (bench/queries/NestedPage.graphql) served by hand-written SQL
and orjson in a bare Starlette endpoint, on the same database as the server.

It does what the server must do for that page and nothing more: look up the API key
(hashed, as the server does), fetch 20 sessions, their first 10 turns and those turns'
first 10 events with a window function (three statements), and write the same JSON the
server writes. No GraphQL: the gap between this and the server is what GraphQL execution
and the ORM cost. Run: python bench/floor.py --database-url URL --port P
"""

import argparse
import asyncio
import contextlib
import base64
import hashlib
import uuid

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

KEY = "SELECT user_id, org_id, role FROM api_keys WHERE key_hash = {0} AND revoked_at IS NULL"
SESSIONS = (
    "SELECT id, title, created_at, turn_count, tokens_used FROM sessions"
    " WHERE {scope} = {0} AND deleted_at IS NULL ORDER BY created_at DESC, id DESC LIMIT 20"
)
TURNS = (
    "SELECT id, session_id, position, task_id, user_query, result, fallback_output, status, created_at,"
    " tokens_used FROM (SELECT *, row_number() OVER (PARTITION BY session_id ORDER BY position) AS n"
    " FROM turns WHERE session_id IN ({ids})) AS t WHERE n <= 10 ORDER BY session_id, position"
)
EVENTS = (
    "SELECT id, turn_id, seq, type, agent_id, content, timestamp FROM (SELECT id, turn_id, seq, type,"
    " agent_id, content, timestamp, row_number() OVER (PARTITION BY turn_id ORDER BY seq) AS n FROM events"
    " WHERE turn_id IN ({ids}) AND type <> 'LLM_PARTIAL') AS e WHERE n <= 10 ORDER BY turn_id, seq"
)


def global_id(kind: str, value) -> str:
    return base64.b64encode(f"{kind}:{value}".encode()).decode()


class Postgres:
    """asyncpg, no ORM: uuid and timestamptz come back as Python objects."""

    def __init__(self, url: str) -> None:
        self.url = url.replace("postgresql+asyncpg://", "postgresql://")

    async def start(self):
        import asyncpg

        self.pool = await asyncpg.create_pool(self.url, min_size=2, max_size=8)

    async def fetch(self, sql: str, *args):
        async with self.pool.acquire() as connection:
            return await connection.fetch(sql.format("$1"), *args)

    async def ids(self, sql: str, ids: list):
        async with self.pool.acquire() as connection:
            return await connection.fetch(sql.format(ids="SELECT unnest($1::" + self.array_type(ids) + ")"), ids)

    @staticmethod
    def array_type(ids: list) -> str:
        return "uuid[]" if ids and isinstance(ids[0], uuid.UUID) else "bigint[]"

    uuid_of = staticmethod(lambda value: value)

    @staticmethod
    def stamp(value) -> str:
        return value.isoformat().replace("+00:00", "Z")


class SQLite:
    """aiosqlite connections in a small pool; SQLAlchemy stores uuids as 32 hex digits and
    timestamps as UTC text."""

    def __init__(self, url: str, size: int = 4) -> None:
        self.path, self.size = url.split(":///", 1)[1], size

    async def start(self):
        import aiosqlite

        self.pool: asyncio.Queue = asyncio.Queue()
        for _ in range(self.size):
            connection = await aiosqlite.connect(self.path)
            await connection.execute("PRAGMA journal_mode=WAL")
            self.pool.put_nowait(connection)

    async def _run(self, sql: str, args):
        connection = await self.pool.get()
        try:
            async with connection.execute(sql, args) as cursor:
                return await cursor.fetchall()
        finally:
            self.pool.put_nowait(connection)

    async def fetch(self, sql: str, *args):
        return await self._run(sql.format("?"), args)

    async def ids(self, sql: str, ids: list):
        return await self._run(sql.format(ids=", ".join("?" * len(ids))), ids)

    uuid_of = staticmethod(lambda value: uuid.UUID(value))

    @staticmethod
    def stamp(value: str) -> str:
        return value.replace(" ", "T").removesuffix(".000000") + "Z"  # as the server writes it


def create_app(db) -> Starlette:
    async def nested_page(request: Request) -> Response:
        key = request.headers.get("x-api-key", "")
        found = await db.fetch(KEY, hashlib.sha256(key.encode()).hexdigest())
        if not found:
            return Response(b'{"errors":[{"message":"A valid API key is required."}]}', 401)
        user_id, org_id, role = found[0]
        scope, owner = ("org_id", org_id) if role == "ADMIN" else ("user_id", user_id)
        sessions = await db.fetch(SESSIONS.replace("{scope}", scope), owner)
        turns = await db.ids(TURNS, [s[0] for s in sessions]) if sessions else []
        events = await db.ids(EVENTS, [t[0] for t in turns]) if turns else []

        events_of: dict = {}
        for e in events:
            content = e[5]
            events_of.setdefault(e[1], []).append(
                {
                    "id": global_id("Event", e[0]),
                    "seq": e[2],
                    "type": e[3],
                    "agentId": e[4],
                    "message": None if content is None else bytes(content).decode(errors="replace"),
                    "timestamp": db.stamp(e[6]),
                }
            )
        turns_of: dict = {}
        for t in turns:
            result = (t[5] or "").strip()
            turns_of.setdefault(t[1], []).append(
                {
                    "id": global_id("Turn", t[0]),
                    "turn": t[2],
                    "taskId": t[3],
                    "userQuery": t[4],
                    "finalOutput": result or t[6],
                    "status": t[7],
                    "createdAt": db.stamp(t[8]),
                    "tokensUsed": t[9],
                    "events": {"nodes": events_of.get(t[0], [])},
                }
            )
        nodes = [
            {
                "id": global_id("Session", db.uuid_of(s[0])),
                "title": s[1],
                "createdAt": db.stamp(s[2]),
                "turnCount": s[3],
                "tokensUsed": s[4],
                "turns": {"nodes": turns_of.get(s[0], [])},
            }
            for s in sessions
        ]
        return Response(orjson.dumps({"data": {"sessions": {"nodes": nodes}}}), media_type="application/json")

    async def healthz(request):
        return PlainTextResponse("ok")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await db.start()
        yield

    return Starlette(
        routes=[Route("/graphql", nested_page, methods=["POST"]), Route("/healthz", healthz)],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    db = SQLite(args.database_url) if args.database_url.startswith("sqlite") else Postgres(args.database_url)
    uvicorn.run(create_app(db), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
