"""Issue 21's bar for counts kept by the writers: the 100,000-event session's events page
with `totalCount` (graphql_queries/SessionEvents.graphql on the long session of
bench/generate.py) must reach at least half the session list's rate
(graphql_queries/SessionList.graphql), measured with wrk, the two alternated A B A B.

With `--before-bin PATH` (another checkout's `sessiongraph`, e.g. one without the kept
counts) the same is measured on that build too, each build on a database of its own
imported from the same file, and every run alternates over the four targets, so that the
shared machine's load falls on all of them alike. Prints a Markdown section.

    python bench/limits.py [--databases sqlite,postgresql] [--long-events 100000] [--before-bin ../main/.venv/bin/sessiongraph]
"""

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import generate  # noqa: E402
import run  # noqa: E402  (bench/run.py: its server, wrk and database helpers)

LONG_ID = 'query { session(id: "bench-long") { id events(first: 1) { totalCount } } }'


def load(sg: list[str], url: str, data_file: Path) -> tuple[str, float]:
    """A fresh database of `sg`'s build with the data set; (an API key, import seconds)."""
    if url.startswith("sqlite"):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{url.split(':///', 1)[1]}{suffix}").unlink(missing_ok=True)
    else:
        asyncio.run(run.recreate_postgres(url))
    run.run([*sg, "migrate"], stdout=subprocess.DEVNULL)
    started = time.perf_counter()
    run.run([*sg, "import", str(data_file)], capture_output=True, text=True)
    return run.create_bench_key(sg), time.perf_counter() - started


def bench_database(db: str, urls: dict[str, str], builds: dict[str, str], data_file: Path, args) -> list[str]:
    lines = [f"### {db}", ""]
    contenders, targets = [], []
    list_document = (run.QUERIES / "SessionList.graphql").read_text()
    events_document = (run.QUERIES / "SessionEvents.graphql").read_text()
    try:
        for build, binary in builds.items():
            sg = [binary, "--database-url", urls[build]]
            print(f"== {db} {build}: importing", flush=True)
            key, seconds = load(sg, urls[build], data_file)
            lines.append(f"- {build}: import {seconds:.1f} s")
            server = run.Contender(f"{build}", [*sg, "serve", "--host", "127.0.0.1", "--port", "{port}"])
            contenders.append(server)
            server.start(run.OUT / "logs" / f"limits-{build}-{db}.log")
            found = run.post(server.url, {"query": LONG_ID}, key)["data"]["session"]
            assert found["events"]["totalCount"] == args.long_events, found
            targets += [
                run.Target(f"{db}-{build}-session-list", server, {"query": list_document}, key),
                run.Target(f"{db}-{build}-long-events", server, {"query": events_document, "variables": {"id": found["id"]}}, key),
            ]
        for target in targets:
            run.answer(target)  # no errors
        result = run.measure(f"limits ({db})", targets, args.rounds, args.duration, args.connections, args.warm)
    finally:
        for server in contenders:
            server.stop()
    basis = result["basis"]
    lines += ["", f"| target | req/s ({'16 / mean latency' if basis == 'rps_little' else 'completed/s'}) per round | median | p99 ms (median) | failed |",
              "| --- | --- | --- | --- | --- |"]
    medians = {}
    for name in result["targets"]:
        runs = result["runs"][name]
        medians[name] = statistics.median(r[basis] for r in runs)
        lines.append(
            f"| {name} | {', '.join(f'{r[basis]:.0f}' for r in runs)} | {medians[name]:.0f} | "
            f"{statistics.median(r['p99_us'] for r in runs) / 1000:.1f} | {sum(r['failed'] for r in runs)} |"
        )
    lines.append("")
    for build in builds:
        events, listed = medians[f"{db}-{build}-long-events"], medians[f"{db}-{build}-session-list"]
        verdict = "meets" if events >= listed / 2 else "misses"
        lines.append(f"- {build}: long session's events page at {events / listed:.2f}x the session list's rate ({verdict} the bar of 0.5x)")
    lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/sessiongraph_bench_limits")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--events", type=int, default=10)
    parser.add_argument("--long-events", type=int, default=100_000)
    parser.add_argument("--before-bin", help="another build's sessiongraph, measured alongside on its own database")
    parser.add_argument("--duration", type=int, default=8, help="seconds of each wrk run")
    parser.add_argument("--warm", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    wrk_version = run.ensure_wrk()
    run.DATA.mkdir(exist_ok=True)
    (run.OUT / "logs").mkdir(parents=True, exist_ok=True)
    data_file = run.DATA / f"limits-{args.sessions}-{args.turns}-{args.events}-{args.long_events}.jsonl"
    if not data_file.exists():
        generate.write(str(data_file), args.sessions, args.turns, args.events, args.long_events)
    builds = {"this build": str(run.BIN / "sessiongraph")}
    if args.before_bin:
        builds["before"] = args.before_bin
    lines = [
        "## Kept event counts: the long session's events page against the session list (bench/limits.py)",
        "",
        f"Data: {args.sessions} sessions x {args.turns} turns x {args.events} events, and one session of "
        f"{args.long_events:,} events. wrk ({wrk_version}): 2 threads, {args.connections} connections, "
        f"{args.duration} s a run after {args.warm} s warm-up, {args.rounds} rounds alternated over every target.",
        "",
    ]
    for db in [d for d in args.databases.split(",") if d]:
        if db == "sqlite":
            urls = {build: f"sqlite+aiosqlite:///{run.DATA}/limits-{i}.db" for i, build in enumerate(builds)}
        else:
            urls = {build: f"{args.postgres_url}{'' if i == 0 else f'_{i}'}" for i, build in enumerate(builds)}
        lines += bench_database(db, urls, builds, data_file, args)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
