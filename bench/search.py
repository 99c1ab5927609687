"""Full-text search bench (issue 18): on each database, a data set of N events (about 200
bytes of text each, a tenth of them non-Latin: CJK, Greek, Cyrillic), imported through the
importer twice -- with the search (folded copies and their index) and without it -- then
`searchEvents` first pages for a rare term, a common term and three terms, each against the
same page read by a plain scan (LIKE/ILIKE over the content, no index), and the index's size
against the events table's. Prints a Markdown section.

    python bench/search.py [--databases sqlite,postgresql] [--events 1000000]
        [--postgres-url postgresql+asyncpg://postgres@127.0.0.1:5432/sessiongraph_bench_search]

Queries go through the schema in-process (no HTTP: the index is what is measured), one at a
time: req/s is one client's rate.
"""

import argparse
import asyncio
import io
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from sqlalchemy import Uuid, bindparam, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sessiongraph.ingest.importer import import_lines  # noqa: E402
from sessiongraph.migrations import upgrade_async  # noqa: E402
from sessiongraph.models import create_engine  # noqa: E402
from sessiongraph.models import recording  # noqa: E402
from sessiongraph.models.indexer import index_all  # noqa: E402
from sessiongraph.models.search import queued  # noqa: E402
from sessiongraph.resolvers.context import RequestContext, Viewer  # noqa: E402
from sessiongraph.schema import schema  # noqa: E402

ORG = uuid.UUID("00000000-0000-4000-8000-00000000b0b0")
USER = uuid.UUID("00000000-0000-4000-8000-0000000000a1")
T0 = datetime(2025, 1, 1, tzinfo=UTC)
LATIN = ("the deployment of service", "database connection pool", "retry after timeout", "customer invoice total",
         "summarise the quarterly report", "lorem ipsum dolor sit amet", "agent called the search tool",
         "result parsed as json", "planning a trip to Lisbon", "error while reading the file")
NON_LATIN = ("连接数据库失败，正在重试", "用户请求生成季度报告", "Η σύνδεση με τη βάση δεδομένων απέτυχε",
             "Ошибка подключения к базе данных", "東京の天気を調べてください")
RARE = "zanzibar"  # in one event in 100,000
SEARCHES = {"rare term": RARE, "common term": "database", "three terms": "retry timeout pool"}
PAGE = """query($q: String!) { searchEvents(query: $q, first: 20) {
  edges { cursor snippet matches { start length } node { id seq type timestamp message } } pageInfo { hasNextPage } } }"""


def message(rng: random.Random, i: int) -> str:
    pool = NON_LATIN if i % 10 == 0 else LATIN
    words = []
    while sum(map(len, words)) < 190:
        words.append(rng.choice(pool))
    if i % 100_000 == 50_000:
        words.insert(rng.randrange(len(words)), RARE.upper())
    return f"{i}: " + " ".join(words)


def data_set(events: int, per_session: int = 100) -> bytes:
    """The JSON Lines: sessions of `per_session` session-level events."""
    rng = random.Random(18)
    lines, i = [], 0
    for n in range(events // per_session):
        created = T0 + timedelta(minutes=n)
        line = {
            "session_id": str(uuid.UUID(int=(2 << 64) | n, version=4)), "org_id": str(ORG), "user_id": str(USER),
            "title": f"Search bench {n}", "created_at": created.isoformat().replace("+00:00", "Z"),
            "events": [],
        }
        for k in range(per_session):
            at = created + timedelta(seconds=k)
            line["events"].append({"type": "LLM_OUTPUT", "message": message(rng, i),
                                   "timestamp": at.isoformat().replace("+00:00", "Z")})
            i += 1
        lines.append(orjson.dumps(line))
    return b"\n".join(lines) + b"\n"


async def fresh(database: str, postgres_url: str, directory: str, name: str) -> str:
    if database == "sqlite":
        url = f"sqlite+aiosqlite:///{directory}/{name}.db"
    else:
        url = make_url(postgres_url).set(database=f"{make_url(postgres_url).database}_{name}").render_as_string(hide_password=False)
        admin = create_engine(make_url(postgres_url).set(database="postgres").render_as_string(hide_password=False),
                              isolation_level="AUTOCOMMIT")
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}"'))
            await connection.execute(text(f'CREATE DATABASE "{make_url(url).database}"'))
        await admin.dispose()
    await upgrade_async(url)
    return url


async def drop_databases(postgres_url: str, *names: str) -> None:
    """The bench's PostgreSQL databases, dropped when it is done (a million events: a GB)."""
    admin = create_engine(make_url(postgres_url).set(database="postgres").render_as_string(hide_password=False),
                          isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        for name in names:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{make_url(postgres_url).database}_{name}"'))
    await admin.dispose()


async def drop_search_index(engine) -> None:
    async with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            for trigger in ("delete", "update"):
                await connection.execute(text(f"DROP TRIGGER events_search_{trigger}"))
        await connection.execute(text("DROP TABLE events_search"))
        await connection.execute(text("DROP TABLE search_pending"))


async def _no_index(connection, *args) -> None:
    pass


async def timed_import(url: str, lines: bytes, with_search: bool) -> float:
    """Seconds to import `lines`; without the search: no index, no queue, no folding."""
    engine = create_engine(url)
    saved = recording.queue_new_events
    try:
        if not with_search:
            await drop_search_index(engine)
            recording.queue_new_events = _no_index
        started = time.perf_counter()
        report = await import_lines(url, io.BytesIO(lines), errors=io.StringIO(), progress_every=1e9, engine=engine)
        elapsed = time.perf_counter() - started
        assert report.lines and not report.rejected, report.summary()
        await analyze(engine)
        return elapsed
    finally:
        recording.queue_new_events = saved
        await engine.dispose()


async def analyze(engine) -> None:
    """Statistics for PostgreSQL's planner, as autovacuum would have them."""
    if engine.dialect.name == "postgresql":
        maintenance = create_engine(engine.url, isolation_level="AUTOCOMMIT")
        async with maintenance.connect() as connection:
            await connection.execute(text("VACUUM ANALYZE"))
        await maintenance.dispose()


# A server's background indexer, in a process of its own.
INDEXER = (
    "import asyncio, sys\n"
    "from sessiongraph.models import create_engine\n"
    "from sessiongraph.models.indexer import keep_indexing\n"
    "asyncio.run(keep_indexing(create_engine(sys.argv[1]), idle_seconds=0.1))\n"
)


async def timed_import_beside_an_indexer(url: str, lines: bytes) -> tuple[float, float]:
    """Seconds to import `lines` while another process indexes what it queues (as a running
    server does), and seconds from the start until the index holds everything."""
    engine = create_engine(url)
    indexer = subprocess.Popen([sys.executable, "-c", INDEXER, url])
    try:
        started = time.perf_counter()
        report = await import_lines(url, io.BytesIO(lines), errors=io.StringIO(), progress_every=1e9, engine=engine)
        imported = time.perf_counter() - started
        assert report.lines and not report.rejected, report.summary()
        while True:
            async with engine.connect() as connection:
                if not await queued(connection):
                    break
            await asyncio.sleep(0.1)
        return imported, time.perf_counter() - started
    finally:
        indexer.terminate()
        indexer.wait()
        await engine.dispose()


async def timed_indexing(url: str) -> tuple[float, int]:
    """Seconds the indexer takes to index what the import queued (as `sessiongraph index`
    does, and a server in the background), and how many events."""
    engine = create_engine(url)
    try:
        started = time.perf_counter()
        indexed = await index_all(engine)
        elapsed = time.perf_counter() - started
        await analyze(engine)
        return elapsed, indexed
    finally:
        await engine.dispose()


def scan_statement(dialect: str, terms: list[str]) -> str:
    """The same first page by plain scan: the content itself, LIKE (SQLite's is
    case-insensitive for ASCII) or ILIKE, no index."""
    if dialect == "sqlite":
        match = " AND ".join(f"CAST(e.content AS TEXT) LIKE '%{t}%'" for t in terms)
    else:
        match = " AND ".join(f"convert_from(e.content, 'UTF8') ILIKE '%{t}%'" for t in terms)
    return (
        "SELECT e.id, e.seq, e.type, e.timestamp, e.content FROM events e JOIN sessions s ON s.id = e.session_id"
        f" WHERE s.org_id = :org AND s.user_id = :user AND s.deleted_at IS NULL AND e.type <> 'LLM_PARTIAL' AND {match}"
        " ORDER BY e.timestamp DESC, e.seq DESC, e.id DESC LIMIT 21"
    )


def figures(times: list[float]) -> str:
    times = sorted(times)
    p50 = statistics.median(times) * 1000
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))] * 1000
    return f"{p50:.1f} | {p99:.1f} | {len(times) / sum(times):.1f}"


async def measure(url: str, requests: int, scan_requests: int, only: str | None = None) -> list[str]:
    engine = create_engine(url)
    viewer = Viewer(USER, ORG, "USER", "USER")
    rows = []
    try:
        for name, query in SEARCHES.items():
            if only is not None and name != only:
                continue
            times = []
            for _ in range(requests + 2):
                context = RequestContext(engine, viewer)
                started = time.perf_counter()
                result = await schema.execute(PAGE, variable_values={"q": query}, context_value=context)
                await context.close()
                times.append(time.perf_counter() - started)
                assert result.errors is None, result.errors
            hits = len(result.data["searchEvents"]["edges"])
            times = times[2:]  # the first runs warm the plan and the caches
            statement = text(scan_statement(engine.dialect.name, query.split())).bindparams(
                bindparam("org", type_=Uuid()), bindparam("user", type_=Uuid()))
            scans = []
            async with engine.connect() as connection:
                for _ in range(scan_requests):
                    started = time.perf_counter()
                    found = (await connection.execute(statement, {"org": ORG, "user": USER})).all()
                    scans.append(time.perf_counter() - started)
            if not scans:
                rows.append(f"| {name} (`{query}`, {hits} on the page) | {figures(times)} |")
                continue
            assert len(found[:20]) == hits, (name, len(found), hits)
            ratio = statistics.median(scans) / statistics.median(times)
            rows.append(f"| {name} (`{query}`, {hits} on the page) | {figures(times)} | {figures(scans)} | {ratio:.0f}x |")
    finally:
        await engine.dispose()
    return rows


async def sizes(url: str) -> str:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                stat = dict((await connection.execute(text(
                    "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"
                ))).all())
                index = sum(v for k, v in stat.items() if k.startswith("events_search"))
                events = stat["events"]
                folded = 0  # SQLite's index keeps no folded copy of the events' texts (migration 0007)
            else:
                index = await connection.scalar(text("SELECT pg_total_relation_size('events_search')"))
                events = await connection.scalar(text("SELECT pg_table_size('events')"))
                folded = await connection.scalar(text("SELECT pg_table_size('events_search')"))
    finally:
        await engine.dispose()
    mb = 1024 * 1024
    return (f"index {index / mb:.0f} MB (on PostgreSQL with its table of folded texts, {folded / mb:.0f} MB of it); "
            f"events table {events / mb:.0f} MB; index / table {index / events:.2f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/sessiongraph_bench_search")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--import-events", type=int, default=None,
                        help="events of the import comparison (default: --events)")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--scan-requests", type=int, default=5)
    args = parser.parse_args()
    lines = data_set(args.events)
    import_lines_ = lines if args.import_events is None else data_set(args.import_events)
    print(f"## Full-text search ({args.events:,} events, {len(lines) / 1024 / 1024:.0f} MB of JSON Lines)\n")
    with tempfile.TemporaryDirectory() as directory:
        for database in args.databases.split(","):
            print(f"### {database}\n")
            without = await timed_import(await fresh(database, args.postgres_url, directory, "without"), import_lines_, False)
            url = await fresh(database, args.postgres_url, directory, "search")
            with_index = await timed_import(url, import_lines_, True)
            events = args.import_events or args.events
            if import_lines_ is not lines:
                indexing, _ = await timed_indexing(url)
                url = await fresh(database, args.postgres_url, directory, "search")
                await timed_import(url, lines, True)
                queued_rows = await measure(url, 3, 0, only="rare term")
                await timed_indexing(url)
            else:
                queued_rows = await measure(url, 3, 0, only="rare term")
                indexing, indexed = await timed_indexing(url)
                assert indexed == args.events, indexed
            print(f"Import of {events:,} events: with the search {events / with_index:,.0f} events/s, without "
                  f"{events / without:,.0f} events/s: **{without / with_index:.2f}x**. Then the indexer (`sessiongraph "
                  f"index`; a server's in the background) {indexing:.1f} s, {events / indexing:,.0f} events/s; import and "
                  f"indexing together against the import without the search: {without / (with_index + indexing):.2f}x.\n")
            beside, caught_up = await timed_import_beside_an_indexer(
                await fresh(database, args.postgres_url, directory, "beside"), import_lines_)
            print(f"Beside an indexer in another process (a running server's, 2 cores shared): import "
                  f"{events / beside:,.0f} events/s, **{without / beside:.2f}x** the import without the search; "
                  f"everything indexed {caught_up:.1f} s from the start: {without / caught_up:.2f}x.\n")
            print("Right after the import, nothing indexed yet (the queue scanned): "
                  + "; ".join(r.split("|")[1].strip() + ": p50 " + r.split("|")[2].strip() + " ms" for r in queued_rows) + ".\n")
            print(f"Size: {await sizes(url)}.\n")
            print("| first page of searchEvents | index p50 ms | p99 ms | req/s | plain scan p50 ms | p99 ms | req/s | index buys |")
            print("| --- | --- | --- | --- | --- | --- | --- | --- |")
            for row in await measure(url, args.requests, args.scan_requests):
                print(row)
            print()
            if database == "postgresql":
                await drop_databases(args.postgres_url, "without", "search", "beside")


if __name__ == "__main__":
    asyncio.run(main())
