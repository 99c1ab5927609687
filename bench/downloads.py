"""Downloads (issue 16), on each database:

1. A session of `--events` (1,000,000) TERMINAL events exported as CSV and as JSONL through
   its link (`sessiongraph serve`, one process): MB/s, and the server's RSS growth during
   it (sampled every 20 ms; the bar is under 50 MB), against the time to read the same rows
   with a plain SQL cursor (SQLAlchemy's `stream`, same batch size, same database).
2. `--concurrent` (100) downloads at once of a `--small-events` (10,000) event session while
   wrk loads the nested page (bench/queries/NestedPage.graphql) over a small data set
   (bench/generate.py): failed or short downloads, and the nested page's rate during them
   against its rate alone.

Prints a Markdown section. Standalone: `python bench/downloads.py --databases sqlite`.
"""

import argparse
import asyncio
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import generate  # noqa: E402
import run as bench  # noqa: E402  (its server, wrk and database helpers)

DOWNLOAD = """query ($id: ID!, $format: ExportFormat!) {
  session(id: $id) { download(format: $format, expiresInSeconds: 3600) { url } }
}"""
BIG, SMALL = uuid.UUID("00000000-0000-4000-8000-0000000d0001"), uuid.UUID("00000000-0000-4000-8000-0000000d0002")
T0 = datetime(2025, 1, 1, tzinfo=UTC)


async def add_terminal_session(url: str, session_id: uuid.UUID, events: int) -> None:
    """A TERMINAL session of `events` OUTPUT/INPUT events, written in bulk (an import line of
    a million events would take the importer gigabytes)."""
    from sqlalchemy import update

    from sessiongraph.models import Event, Session, create_engine
    from sessiongraph.models.recording import NewSession, store_session

    engine = create_engine(url)
    try:
        new = NewSession(org_id=generate.ORG, user_id=generate.USER, created_at=T0, session_id=session_id, title=f"{events} events", status="OPEN")
        async with engine.begin() as connection:
            await store_session(connection, new)
            await connection.execute(
                update(Session).where(Session.id == session_id).values(
                    kind="TERMINAL", verb="CONNECT", resource_name="bench", resource_type="custom", terminal_columns=120, terminal_rows=40
                )
            )
        batch = 20_000
        for start in range(0, events, batch):
            rows = [
                {
                    "session_id": session_id, "turn_id": None, "seq": i + 1, "type": "OUTPUT" if i % 4 else "INPUT",
                    "content": f"{i:08d} row,with \"quotes\" and text of a terminal line\r\n".encode(),
                    "timestamp": T0 + timedelta(milliseconds=i),
                }
                for i in range(start, min(events, start + batch))
            ]
            async with engine.begin() as connection:
                await connection.execute(Event.__table__.insert(), rows)
        async with engine.begin() as connection:
            await connection.execute(update(Session).where(Session.id == session_id).values(event_count=events))
    finally:
        await engine.dispose()


async def plain_read(url: str, session_id: uuid.UUID) -> tuple[float, int]:
    """Seconds to read the session's event rows with a plain streaming cursor, and their count."""
    from sqlalchemy import text

    from sessiongraph.models import create_engine

    engine = create_engine(url)
    try:
        statement = text(
            "SELECT seq, type, agent_id, content, timestamp, payload, dedup_key FROM events WHERE session_id = :s ORDER BY seq"
        ).execution_options(yield_per=2000)
        session = session_id.hex if url.startswith("sqlite") else session_id
        started = time.perf_counter()
        count = 0
        async with engine.connect() as connection:
            result = await connection.stream(statement, {"s": session})
            async for batch in result.partitions():
                count += len(batch)
        return time.perf_counter() - started, count
    finally:
        await engine.dispose()


class RssSampler:
    """The server's RSS every 20 ms while it runs: its peak over a start value."""

    def __init__(self, server) -> None:
        self.server, self.peak, self.stop = server, 0.0, threading.Event()

    def __enter__(self):
        self.start = self.server.rss_mb()
        self.peak = self.start
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.server.rss_mb())
            time.sleep(0.02)

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    @property
    def growth(self) -> float:
        return self.peak - self.start


def link(server_url: str, key: str, session_id: uuid.UUID, format: str) -> str:
    data = bench.post(server_url, {"query": DOWNLOAD, "variables": {"id": str(session_id), "format": format}}, key)
    return data["data"]["session"]["download"]["url"]


def fetch(url: str, chunk: int = 1 << 20) -> tuple[int, int]:
    """(HTTP status, bytes) of a download, read as it comes."""
    size = 0
    with urllib.request.urlopen(url, timeout=600) as response:
        while block := response.read(chunk):
            size += len(block)
        return response.status, size


def bench_database(db: str, url: str, args, data_file: Path) -> list[str]:
    print(f"== {db}", flush=True)
    if url.startswith("sqlite"):
        path = Path(url.split(":///", 1)[1])
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        asyncio.run(bench.recreate_postgres(url))
    sg = [str(bench.BIN / "sessiongraph"), "--database-url", url]
    bench.run([*sg, "migrate"], stdout=subprocess.DEVNULL)
    bench.run([*sg, "import", str(data_file)], stdout=subprocess.DEVNULL)
    started = time.perf_counter()
    asyncio.run(add_terminal_session(url, BIG, args.events))
    asyncio.run(add_terminal_session(url, SMALL, args.small_events))
    print(f"   {args.events} + {args.small_events} events written in {time.perf_counter() - started:.0f} s", flush=True)
    key = bench.create_bench_key(sg)
    lines = [f"### {db}", ""]
    server = bench.Contender("server", [*sg, "serve", "--host", "127.0.0.1", "--port", "{port}"])
    logs = bench.OUT / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    server.start(logs / f"downloads-server-{db}.log")
    try:
        plain_seconds, rows = asyncio.run(plain_read(url, BIG))
        print(f"   plain cursor: {rows} rows in {plain_seconds:.2f} s", flush=True)
        lines += [
            f"A session of {args.events:,} events through its link, one server process; the plain SQL cursor reads "
            f"the same {rows:,} rows in {plain_seconds:.2f} s ({rows / plain_seconds:,.0f} rows/s).",
            "",
            "| format | size MB | seconds | MB/s | events/s | time / plain cursor | server RSS growth MB (peak) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for format in ("CSV", "JSONL"):
            target = link(server.url, key, BIG, format)
            with RssSampler(server) as rss:
                started = time.perf_counter()
                status, size = fetch(target)
                seconds = time.perf_counter() - started
            assert status == 200
            mb = size / 1e6
            print(f"   {format}: {mb:.1f} MB in {seconds:.2f} s, RSS +{rss.growth:.1f} MB", flush=True)
            lines.append(
                f"| {format} | {mb:.1f} | {seconds:.2f} | {mb / seconds:.1f} | {args.events / seconds:,.0f} | "
                f"{seconds / plain_seconds:.1f}x | {rss.growth:.1f} |"
            )
        server.settle()

        # The nested page alone, then with the downloads running.
        nested = bench.Target(f"{db}-downloads-nested", server, {"query": (BENCH / "queries/NestedPage.graphql").read_text()}, key)
        bench.answer(nested)
        bench.wrk(nested, 2, args.connections)  # warm-up
        alone = bench.wrk(nested, args.duration, args.connections)
        small = link(server.url, key, SMALL, "CSV")
        expected = fetch(small)[1]
        outcomes: list = []

        def downloads() -> None:
            time.sleep(1)  # wrk is under way
            with concurrent.futures.ThreadPoolExecutor(args.concurrent) as pool:
                futures = [pool.submit(fetch, small) for _ in range(args.concurrent)]
                started = time.perf_counter()
                for f in futures:
                    try:
                        outcomes.append(f.result())
                    except Exception as e:  # a refused or cut connection counts as failed
                        outcomes.append((repr(e), 0))
                outcomes.append(("seconds", time.perf_counter() - started))

        worker = threading.Thread(target=downloads)
        with RssSampler(server) as rss:
            worker.start()
            during = bench.wrk(nested, args.duration, args.connections)
            worker.join()
        seconds = outcomes.pop()[1]
        failed = [o for o in outcomes if o != (200, expected)]
        print(
            f"   {args.concurrent} downloads of {expected / 1e6:.1f} MB: {len(failed)} failed, all done in {seconds:.1f} s; "
            f"nested {alone['rps_little']:.1f} -> {during['rps_little']:.1f} req/s", flush=True,
        )
        lines += [
            "",
            f"{args.concurrent} concurrent downloads (CSV, {args.small_events:,} events, {expected / 1e6:.2f} MB each) while wrk "
            f"loads the nested page ({args.connections} connections, {args.duration} s; the downloads start 1 s in):",
            "",
            "| measure | value |",
            "| --- | ---: |",
            f"| downloads failed or short | {len(failed)} of {args.concurrent} |",
            f"| all downloads done in | {seconds:.1f} s |",
            f"| nested page alone, req/s | {alone['rps_little']:.1f} (failed {alone['failed']}) |",
            f"| nested page during the downloads, req/s | {during['rps_little']:.1f} (failed {during['failed']}) |",
            f"| nested page p99 alone / during, ms | {alone['p99_us'] / 1000:.0f} / {during['p99_us'] / 1000:.0f} |",
            f"| server RSS growth during, MB | {rss.growth:.1f} |",
            "",
        ]
    finally:
        server.stop()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/sessiongraph_bench_downloads")
    parser.add_argument("--events", type=int, default=1_000_000, help="events of the large session (1,000,000)")
    parser.add_argument("--small-events", type=int, default=10_000, help="events of the session downloaded concurrently (10,000)")
    parser.add_argument("--concurrent", type=int, default=100, help="downloads at once (100)")
    parser.add_argument("--sessions", type=int, default=200, help="sessions of the nested page's data set (200)")
    parser.add_argument("--connections", type=int, default=16, help="wrk's connections on the nested page (16)")
    parser.add_argument("--duration", type=int, default=10, help="seconds of each wrk run (10)")
    args = parser.parse_args()
    bench.ensure_wrk()
    bench.DATA.mkdir(exist_ok=True)
    bench.OUT.mkdir(exist_ok=True)
    data_file = bench.DATA / f"downloads-{args.sessions}.jsonl"
    if not data_file.exists():
        subprocess.run(
            [sys.executable, str(BENCH / "generate.py"), str(data_file), "--sessions", str(args.sessions), "--long-events", "100"],
            check=True,
        )
    urls = {"sqlite": f"sqlite+aiosqlite:///{bench.DATA / 'downloads.db'}", "postgresql": args.postgres_url}
    lines = [
        "## Downloads (issue 16)",
        "",
        f"{bench.machine()['nproc']} cores; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
    ]
    for db in args.databases.split(","):
        lines += bench_database(db, urls[db], args, data_file)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
