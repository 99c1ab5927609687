"""The gateway's overhead (issue 20): the nested page through Hive Gateway against the same
document sent to sessiongraph directly, and a trivial query both ways (the floor of what a
gateway adds to any request). `make bench-compare` runs it after bench/run.py.

Per database: generate and import the data set (bench/generate.py, bench/run.py's import),
start sessiongraph (`serve`), the users subgraph of the gateway test and Hive Gateway on the
supergraph composed from both (tests/federation/: `npm ci` there first), as
tests/test_federation.py does; check both ways answer the same; then wrk (bench/post.lua) on
each target, alternated A B A B (bench/run.measure). Prints a Markdown section.

The gateway runs as configured for the test (tests/federation/gateway.config.mjs): the key
forwarded, demand control estimating each request's cost from @cost/@listSize."""

import argparse
import asyncio
import datetime
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
FEDERATION = BENCH.parent / "tests" / "federation"
sys.path.insert(0, str(BENCH))
import generate  # noqa: E402
import run  # noqa: E402  bench/run.py: the contenders, the import, wrk and its tables

TRIVIAL = "{ viewer { userId } }"
# A user of the users subgraph with their sessions, turns and events from sessiongraph: a
# query only the gateway can answer (two subgraphs, an entity fetch).
CROSSING = """{ users { name sessions(first: 20) { nodes { title turns(first: 10) {
  nodes { taskId events(first: 10) { nodes { seq type } } } } } } } }"""


def compose(tmp: Path, key: str, subgraphs: list[tuple[str, str]]) -> Path:
    """The supergraph of `subgraphs` (name, url), composed by @theguild/federation-composition."""
    arguments = []
    for name, url in subgraphs:
        sdl = run.post(url, {"query": "{ _service { sdl } }"}, key)["data"]["_service"]["sdl"]
        (tmp / f"{name}.graphql").write_text(sdl)
        arguments.append(f"{name}={url}={tmp / f'{name}.graphql'}")
    supergraph = tmp / "supergraph.graphql"
    subprocess.run(["node", "compose.mjs", str(supergraph), *arguments], cwd=FEDERATION, check=True)
    return supergraph


def bench_database(db: str, url: str, args, data_file: Path, events: int) -> list[str]:
    print(f"== {db}: importing {data_file.name}", flush=True)
    key = run.load_database(url, data_file, args.sessions + 1, events, args.reuse)["key"]
    logs = run.OUT / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    sg = [str(run.BIN / "sessiongraph"), "--database-url", url]
    server = run.Contender("sessiongraph", [*sg, "serve", "--host", "127.0.0.1", "--port", "{port}"])
    names = json.dumps({str(generate.USER): "Bench User"})
    users = run.Contender("users", [sys.executable, str(FEDERATION / "users_subgraph.py"), "{port}", names])
    started = []
    try:
        for c in (server, users):
            c.start(logs / f"gateway-{c.name}-{db}.log")
            started.append(c)
        supergraph = compose(run.OUT, key, [("sessiongraph", server.url), ("users", users.url)])
        gateway = run.Contender(
            "hive-gateway",
            [str(FEDERATION / "node_modules/.bin/hive-gateway"), "supergraph", str(supergraph),
             "--host", "127.0.0.1", "--port", "{port}"],
            cwd=FEDERATION,
        )  # fmt: skip
        gateway.start(logs / f"gateway-hive-{db}.log")
        started.append(gateway)
        nested = run.document(BENCH / "queries/NestedPage.graphql")
        direct = run.Target(f"{db}-direct-nested", server, {"query": nested}, key)
        through = run.Target(f"{db}-gateway-nested", gateway, {"query": nested}, key)
        direct_trivial = run.Target(f"{db}-direct-viewer", server, {"query": TRIVIAL}, key)
        through_trivial = run.Target(f"{db}-gateway-viewer", gateway, {"query": TRIVIAL}, key)
        crossing = run.Target(f"{db}-gateway-user-sessions", gateway, {"query": CROSSING}, key)
        for a, b in ((direct, through), (direct_trivial, through_trivial)):
            if run.answer(a) != run.answer(b):
                raise SystemExit(f"{b.name} answers differently from {a.name}")
        pages = run.answer(crossing)["users"][0]["sessions"]["nodes"]
        if len(pages) != 20:
            raise SystemExit(f"{crossing.name}: {len(pages)} sessions, expected 20")
        groups = [
            run.measure("nested page: direct vs through Hive Gateway", [direct, through], args.rounds, args.duration, args.connections, args.warm),
            run.measure("trivial query: direct vs through Hive Gateway", [direct_trivial, through_trivial], args.rounds, args.duration, args.connections, args.warm),
            run.measure("a user's nested page through the gateway (two subgraphs)", [through, crossing], args.rounds, args.duration, args.connections, args.warm),
        ]  # fmt: skip
        rss = {c.name: c.rss_mb() for c in started}
    finally:
        for c in reversed(started):
            c.stop()
    lines = [f"### {db}", "", "RSS after the runs: " + ", ".join(f"{n} {mb:.0f} MB" for n, mb in rss.items()) + ".", ""]
    for group in groups:
        lines += run.group_table(group, {})
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/sessiongraph_bench_federation")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--events", type=int, default=10)
    parser.add_argument("--duration", type=int, default=8, help="seconds of each wrk run (at most 15)")
    parser.add_argument("--warm", type=int, default=2, help="seconds of the warm-up run of each target")
    parser.add_argument("--rounds", type=int, default=2, help="A B rounds of each measurement")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--reuse", action="store_true", help="keep a database that already holds the data set")
    # BENCH_ARGS of `make bench-compare` may hold bench/run.py's own options: left to it.
    args, others = parser.parse_known_args()
    if others:
        print(f"bench/gateway.py leaves out {' '.join(others)}", flush=True)
    args.duration = min(args.duration, 15)
    if not (FEDERATION / "node_modules/.bin/hive-gateway").exists():
        raise SystemExit(f"Hive Gateway is missing: npm ci in {FEDERATION}")
    run.OUT.mkdir(exist_ok=True)
    run.DATA.mkdir(exist_ok=True)
    machine = {**run.machine(), "wrk": run.ensure_wrk()}
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    databases = {"sqlite": f"sqlite+aiosqlite:///{run.DATA}/bench-gateway.db", "postgresql": args.postgres_url}
    wanted = [d for d in args.databases.split(",") if d]
    if "postgresql" in wanted and asyncio.run(run.postgres_version(args.postgres_url)) is None:
        print("PostgreSQL does not answer: left out", flush=True)
        wanted.remove("postgresql")
    # One small extra session (the data set's long one) is enough here.
    data_file = run.DATA / f"bench-{args.sessions}x{args.turns}x{args.events}+10.jsonl"
    events = args.sessions * args.turns * args.events + 10
    if not data_file.exists():
        generate.write(str(data_file), args.sessions, args.turns, args.events, 10)
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [
        f"## The gateway's overhead (bench/gateway.py, {started})",
        "",
        f"Command: `python bench/gateway.py {' '.join(sys.argv[1:])}`",
        "",
        f"Machine: {machine['nproc']} cores, Python {machine['python']}, {machine['wrk']}, node {node}; load average "
        f"at start {machine['loadavg']}; commit {machine['commit']}. Data: {args.sessions} sessions x {args.turns} turns "
        f"x {args.events} events. wrk: 2 threads, {args.connections} connections, {args.duration} s a run after a "
        f"{args.warm} s warm-up, {args.rounds} rounds alternated. One process each: sessiongraph (uvicorn), the users "
        "subgraph, Hive Gateway (node).",
        "",
    ]
    for db in wanted:
        lines += bench_database(db, databases[db], args, data_file, events)
    text = "\n".join(lines)
    (run.OUT / f"gateway-{started.replace(':', '')}.md").write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
