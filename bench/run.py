"""`make bench` and `make bench-compare`: load-tests the server against the hand-written
floor (bench/floor.py) and, with --compare, PostGraphile 5 (bench/postgraphile/).

For each database: generate the data set (bench/generate.py), time `sessiongraph import`,
start one process of each contender on a loopback port, check they answer the same, count
the SQL statements each document costs (in process, SQLAlchemy event listener), then run
wrk (bench/post.lua) for each measurement, alternating the contenders A B A B (the server
with its planner and again with --no-planner, side by side, too): the machine is
shared, so only ratios within one run mean much. Last, py-spy samples the server while it
serves the nested page. Everything lands in bench/.out/ (a Markdown report and the raw JSON);
bench/RESULTS.md is written by hand from it.
"""

import argparse
import asyncio
import collections
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / ".out"
DATA = BENCH / ".data"
PEER = BENCH / "postgraphile"
BIN = Path(sys.executable).parent
QUERIES = ROOT / "graphql_queries"
WRK_TIMEOUT = "10s"  # a slow nested page is a slow response, not a socket error

sys.path.insert(0, str(BENCH))
import generate  # noqa: E402


def document(path: Path) -> str:
    return path.read_text()


@dataclass
class Contender:
    """One server process under load."""

    name: str
    command: list[str]
    env: dict = field(default_factory=dict)
    cwd: Path = ROOT
    process: subprocess.Popen | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    def start(self, log: Path) -> None:
        self.port = free_port()
        command = [part.replace("{port}", str(self.port)) for part in self.command]
        env = {**os.environ, **{k: v.replace("{port}", str(self.port)) for k, v in self.env.items()}}
        self.log = log.open("wb")
        self.process = subprocess.Popen(command, env=env, cwd=self.cwd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited at start; see {log}")
            try:
                post(self.url, {"query": "{ __typename }"}, None, timeout=2)
                return
            except urllib.error.HTTPError:  # it answers (the server: 401 without a key)
                return
            except OSError:
                time.sleep(0.3)
        raise SystemExit(f"{self.name} did not answer within 90 s; see {log}")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def settle(self, limit: float = 20) -> None:
        """Waits until the process is idle: when wrk stops, the server still works through
        the requests it had in flight, which must not eat into the next run."""
        deadline = time.monotonic() + limit
        before = self.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(0.3)
            now = self.cpu_seconds()
            if now - before < 0.02:
                return
            before = now

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@dataclass
class Target:
    """A document sent to a contender: one wrk measurement."""

    name: str
    contender: Contender
    body: dict
    key: str | None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict, key: str | None, timeout: float = 60) -> dict:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if key:
        headers["X-API-Key"] = key
    request = urllib.request.Request(url, json.dumps(body).encode(), headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def answer(target: Target) -> dict:
    """The data of one request, which must carry no errors."""
    result = post(target.contender.url, target.body, target.key)
    if result.get("errors"):
        raise SystemExit(f"{target.name} answered errors: {json.dumps(result['errors'])[:500]}")
    return result["data"]


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=True, cwd=ROOT, **kwargs)


# --- tools ---------------------------------------------------------------------------


def ensure_wrk() -> str:
    """wrk from Debian's packages: installed here when we are root with apt-get, else a
    clear message of how."""
    if not shutil.which("wrk") and os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: apt-get install -y wrk", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False)
    if not shutil.which("wrk"):
        raise SystemExit("bench needs wrk (Debian/Ubuntu: sudo apt-get install -y wrk; macOS: brew install wrk)")
    return subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.splitlines()[0]


def ensure_postgraphile() -> str:
    """PostGraphile 5 and Node 22 (npm's `node` package), under bench/postgraphile/."""
    node = PEER / "node_modules" / ".bin" / "node"
    if not (PEER / "node_modules" / "postgraphile").exists() or not node.exists():
        if not shutil.which("npm"):
            raise SystemExit("bench-compare needs npm to install PostGraphile (Node's package manager)")
        run(["npm", "--prefix", str(PEER), "install", "--no-audit", "--no-fund", "--loglevel=error"])
    return subprocess.run([str(node), "--version"], capture_output=True, text=True).stdout.strip()


# --- data ----------------------------------------------------------------------------


async def recreate_postgres(url: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from sessiongraph.models import create_engine

    name = make_url(url).database
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()


async def postgres_version(url: str) -> str | None:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from sessiongraph.models import create_engine

    engine = create_engine(make_url(url).set(database="postgres"))
    try:
        async with engine.connect() as connection:
            return (await connection.execute(text("SHOW server_version"))).scalar()
    except (OSError, Exception) as e:  # any failure to reach it: bench PostgreSQL is skipped
        print(f"PostgreSQL at {url} is not reachable ({e.__class__.__name__}): skipped", flush=True)
        return None
    finally:
        await engine.dispose()


async def stored_counts(url: str) -> tuple[int, int] | None:
    """(sessions, events) the database holds; None where it has no such tables."""
    from sqlalchemy import text

    from sessiongraph.models import create_engine

    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            sessions = (await connection.execute(text("SELECT count(*) FROM sessions"))).scalar()
            events = (await connection.execute(text("SELECT count(*) FROM events"))).scalar()
            return sessions, events
    except Exception:  # no database or no tables yet: nothing to reuse
        return None
    finally:
        await engine.dispose()


def load_database(url: str, data_file: Path, sessions: int, events: int, reuse: bool) -> dict:
    """A database with the data set (the timed import into a fresh one, or with `reuse` the
    one already there when it holds exactly that many sessions and events), and an API key
    of its user."""
    sg = [str(BIN / "sessiongraph"), "--database-url", url]
    if reuse and asyncio.run(stored_counts(url)) == (sessions, events):
        return {"reused": True, "events": events, "key": create_bench_key(sg)}
    if url.startswith("sqlite"):
        path = Path(url.split(":///", 1)[1])
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        asyncio.run(recreate_postgres(url))
    run([*sg, "migrate"], stdout=subprocess.DEVNULL)
    started = time.perf_counter()
    done = run([*sg, "import", str(data_file)], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "events": events,
        "events_per_s": events / seconds,
        "summary": done.stdout.strip(),
        "key": create_bench_key(sg),
    }


def create_bench_key(sg: list[str]) -> str:
    created = run(
        [*sg, "apikey", "create", "--org", str(generate.ORG), "--user", str(generate.USER), "--name", "bench"],
        capture_output=True,
        text=True,
    )
    return created.stdout.strip().splitlines()[-1]


# --- finding deep cursors through the public API ------------------------------------


def deep_session_cursor(url: str, key: str, list_document: str, fraction: float) -> tuple[str, int]:
    """The cursor after which the session list's page starts `fraction` deep."""
    first = post(url, {"query": list_document, "variables": {"first": 1}}, key)["data"]["sessions"]
    index = int(first["totalCount"] * fraction)
    seen, after = 0, None
    while True:
        page = post(url, {"query": list_document, "variables": {"first": 100, "after": after}}, key)["data"]["sessions"]
        edges = page["edges"]
        if seen + len(edges) >= index:
            return edges[index - seen - 1]["cursor"], index
        seen, after = seen + len(edges), page["pageInfo"]["endCursor"]


TURN_OF = "query TurnOf($id: ID!) { session(id: $id) { turns(first: 1) { nodes { id } } } }"

EVENT_CURSORS = """query EventCursors($id: ID!, $before: String) {
  session(id: $id) { id events(last: 100, before: $before) { edges { cursor node { seq } } } }
}"""


def deep_event_cursor(url: str, key: str, session: str, events: int, fraction: float) -> tuple[str, str, int]:
    """(the session's global id, the cursor of the event at `fraction` of its events, its
    seq), walking back from the end in pages of 100."""
    seq, before = int(events * fraction), None
    while True:
        found = post(url, {"query": EVENT_CURSORS, "variables": {"id": session, "before": before}}, key)["data"]["session"]
        edges = found["events"]["edges"]
        for edge in edges:
            if edge["node"]["seq"] == seq:
                return found["id"], edge["cursor"], seq
        before = edges[0]["cursor"]


# --- SQL statements per request ------------------------------------------------------


async def count_statements(url: str, key: str, bodies: dict[str, dict]) -> dict[str, int]:
    """Statements each body costs through the ASGI app, counted on its second request (the
    first may warm caches)."""
    import httpx
    from sqlalchemy import event

    from sessiongraph.transport.app import create_app
    from sessiongraph.config import Settings
    from sessiongraph.models import create_engine

    engine = create_engine(url)
    app = create_app(Settings(database_url=url), engine)
    count = [0]

    def counter(*_):
        count[0] += 1

    event.listen(engine.sync_engine, "before_cursor_execute", counter)
    statements = {}
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
            for name, body in bodies.items():
                for _ in range(2):
                    count[0] = 0
                    response = await client.post("/graphql", json=body, headers={"X-API-Key": key})
                    assert response.status_code == 200 and "errors" not in response.json(), response.text[:500]
                statements[name] = count[0]
    finally:
        await engine.dispose()
    return statements


async def documents_with_and_without_planner(url: str, key: str, variables: dict[str, dict], requests: int) -> list[dict]:
    """Each query document of graphql_queries/ through two ASGI apps in this process, the
    planner on and off, requests alternated one by one (A B A B ...): the median time of a
    request on each path. In process, without HTTP or wrk, so that the difference is the
    execution path's alone (issue 8: nothing slower than --no-planner)."""
    import dataclasses
    import statistics

    import httpx

    from sessiongraph.transport.app import create_app
    from sessiongraph.config import Settings
    from sessiongraph.models import create_engine

    engine = create_engine(url)
    apps = [create_app(dataclasses.replace(Settings(database_url=url), planner=planner), engine) for planner in (True, False)]
    found = []
    try:
        clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") for app in apps]
        for name, values in variables.items():
            body = {"query": document(QUERIES / f"{name}.graphql"), "variables": values}
            times: list[list[float]] = [[], []]
            answers = []
            for i in range(requests + 5):
                for path, client in enumerate(clients):
                    began = time.perf_counter()
                    response = await client.post("/graphql", json=body, headers={"X-API-Key": key})
                    if i >= 5:
                        times[path].append(time.perf_counter() - began)
                    assert response.status_code == 200 and "errors" not in response.json(), response.text[:500]
                    if i == 0:
                        answers.append(response.content)
            planned, unplanned = (statistics.median(t) * 1000 for t in times)
            found.append({
                "document": name, "planner_ms": planned, "no_planner_ms": unplanned,
                "ratio": unplanned / planned, "same_answer": answers[0] == answers[1],
            })  # fmt: skip
        for client in clients:
            await client.aclose()
    finally:
        await engine.dispose()
    return found


def documents_table(rows: list[dict]) -> list[str]:
    lines = [
        "Every query document of graphql_queries/, in process, planner on and off alternated request by request "
        "(median of each; speed-up = no-planner time / planner time, above 1 = the planner is faster):",
        "",
        "| document | planner ms | --no-planner ms | speed-up | same answer |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['document']} | {r['planner_ms']:.2f} | {r['no_planner_ms']:.2f} | {r['ratio']:.2f} | {'yes' if r['same_answer'] else '**no**'} |"
        )
    return lines + [""]


# --- the filtered list page ----------------------------------------------------------


async def make_terminal_sessions(url: str) -> None:
    """The filtered list's data: the even sessions made TERMINAL (generate.terminal_sql),
    once (a database that has them already is left as it is), then the statistics."""
    from sqlalchemy import text

    from sessiongraph.models import create_engine

    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            if not (await connection.execute(text("SELECT count(*) FROM sessions WHERE kind = 'TERMINAL'"))).scalar():
                await connection.execute(text(generate.terminal_sql(engine.dialect.name)))
        async with engine.begin() as connection:
            await connection.execute(text("ANALYZE"))
    finally:
        await engine.dispose()


async def fill_postgres(url: str, sessions: int) -> None:
    """The sessions generate.py writes (without turns or events), inserted by one SQL
    statement instead of imported: what is measured here is the list, not the importer,
    and the import of 200,000 sessions takes a quarter of an hour on this machine."""
    from sqlalchemy import text

    from sessiongraph.models import create_engine

    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text("INSERT INTO users (id, org_id, created_at) VALUES (:user, :org, :t0)"),
                {"user": generate.USER, "org": generate.ORG, "t0": generate.T0},
            )
            await connection.execute(
                text(
                    "INSERT INTO sessions (id, org_id, user_id, external_id, title, created_at, updated_at,"
                    " last_activity_at, turn_count, tokens_used, token_budget, metadata, event_count)"
                    " SELECT ('00000000-0000-4000-8001-' || lpad(to_hex(i), 12, '0'))::uuid, :org, :user, 'bench-' || i,"
                    " 'Bench session ' || i, t, t, t, 0, 0, 100000, jsonb_build_object('team', 'bench', 'n', i), 0"
                    " FROM generate_series(0, :n - 1) AS i,"
                    " LATERAL (SELECT CAST(:t0 AS timestamptz) + interval '1 day' + i * interval '1 minute' AS t) AS at"
                ),
                {"user": generate.USER, "org": generate.ORG, "t0": generate.T0, "n": sessions},
            )
    finally:
        await engine.dispose()


async def explain(url: str, key: str, body: dict) -> list[str]:
    """The plan of each statement `body` costs: SQLite's EXPLAIN QUERY PLAN, PostgreSQL's
    EXPLAIN ANALYZE, of the statements as sent (caught on their way to the driver)."""
    import httpx
    from sqlalchemy import event

    from sessiongraph.transport.app import create_app
    from sessiongraph.config import Settings
    from sessiongraph.models import create_engine

    engine = create_engine(url)
    app = create_app(Settings(database_url=url), engine)
    sent = []

    def catch(conn, cursor, statement, parameters, context, executemany):
        sent.append((statement, parameters))

    lines = []
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
            await client.post("/graphql", json=body, headers={"X-API-Key": key})  # the key looked up, caches warm
            event.listen(engine.sync_engine, "before_cursor_execute", catch)
            response = await client.post("/graphql", json=body, headers={"X-API-Key": key})
            event.remove(engine.sync_engine, "before_cursor_execute", catch)
            assert response.status_code == 200 and "errors" not in response.json(), response.text[:500]
        prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN (ANALYZE, COSTS OFF) "
        async with engine.connect() as connection:
            for statement, parameters in sent:
                lines += ["", statement.strip(), ""]
                rows = (await connection.exec_driver_sql(prefix + statement, parameters)).all()
                lines += ["    " + " | ".join(str(v) for v in row[-1:]) for row in rows]
    finally:
        await engine.dispose()
    return lines


def bench_filtered_list(db: str, url: str, args, results: dict) -> None:
    """The session list page filtered by kinds, resourceNames, reviewStatuses and metadata
    (generate.FILTERED) against the same page unfiltered, on `args.sessions` sessions."""
    data_file = DATA / f"bench-{args.sessions}x0x0+0.jsonl"
    if not data_file.exists():
        generate.write(str(data_file), args.sessions, 0, 0, 0)
    sg = [str(BIN / "sessiongraph"), "--database-url", url]
    if db == "postgresql":
        if not (args.reuse and asyncio.run(stored_counts(url)) == (args.sessions, 0)):
            print(f"== {db}: {args.sessions} sessions by SQL", flush=True)
            asyncio.run(recreate_postgres(url))
            run([*sg, "migrate"], stdout=subprocess.DEVNULL)
            asyncio.run(fill_postgres(url, args.sessions))
        imported = {"reused": True, "key": create_bench_key(sg)}
    else:
        print(f"== {db}: importing {data_file.name}", flush=True)
        imported = load_database(url, data_file, args.sessions + 1, 0, args.reuse)
    key = imported.pop("key")
    asyncio.run(make_terminal_sessions(url))
    session_list = document(QUERIES / "SessionList.graphql")
    bodies = {
        f"{db}-list-unfiltered": {"query": session_list},
        f"{db}-list-filtered": {"query": session_list, "variables": {"filter": generate.FILTERED}},
    }
    statements = asyncio.run(count_statements(url, key, bodies))
    plans = asyncio.run(explain(url, key, bodies[f"{db}-list-filtered"]))
    print("\n".join(plans), flush=True)
    logs = OUT / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    server = Contender("server", [str(BIN / "sessiongraph"), "--database-url", url, "serve", "--host", "127.0.0.1", "--port", "{port}"])
    try:
        server.start(logs / f"server-filtered-{db}.log")
        targets = [Target(name, server, body, key) for name, body in bodies.items()]
        totals = [answer(t)["sessions"]["totalCount"] for t in targets]
        print(f"   totalCount: unfiltered {totals[0]}, filtered {totals[1]}; statements {statements}", flush=True)
        group = measure(f"list page: unfiltered vs filtered ({db})", targets, args.rounds, args.duration, args.connections, args.warm)
    finally:
        server.stop()
    ratios = group["ratios"][targets[1].name]
    print(f"   filtered / unfiltered rate ({group['basis']}): {', '.join(f'{r:.2f}' for r in ratios)}", flush=True)
    results["databases"][db] = {"import": imported, "statements": statements, "groups": [group], "totals": totals, "plans": plans}


# --- load ----------------------------------------------------------------------------


def wrk(target: Target, seconds: float, connections: int) -> dict:
    body_file = OUT / "bodies" / f"{target.name}.json"
    body_file.parent.mkdir(parents=True, exist_ok=True)
    body_file.write_text(json.dumps(target.body))
    env = {**os.environ, "BENCH_BODY_FILE": str(body_file), "BENCH_API_KEY": target.key or ""}
    command = [
        "wrk", "-t2", f"-c{connections}", f"-d{int(seconds)}s", f"--timeout={WRK_TIMEOUT}",
        "-s", str(BENCH / "post.lua"), target.contender.url,
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 30)
    target.contender.settle()
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        raise SystemExit(f"wrk gave no result for {target.name}: {done.stdout}\n{done.stderr}")
    result = json.loads(line[len("BENCH ") :])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    # Little's law: wrk keeps `connections` requests in flight, so this is the rate free of
    # the requests a short run leaves unfinished (which count for much at 5 req/s).
    result["rps_little"] = connections / (result["mean_us"] / 1e6) if result["mean_us"] else 0.0
    result["failed"] = result["bad_status"] + result["with_errors"] + result["socket_errors"]
    return result


def measure(group: str, targets: list[Target], rounds: int, seconds: float, connections: int, warm: float) -> dict:
    """Runs the targets A B A B ...; per round, each target's rate relative to the first
    target's."""
    for target in targets:
        wrk(target, warm, connections)
    runs = collections.defaultdict(list)
    for r in range(rounds):
        for target in targets:
            result = wrk(target, seconds, connections)
            result["rss_mb"] = target.contender.rss_mb()
            runs[target.name].append(result)
            print(
                f"  {group} round {r + 1}: {target.name:<28} {result['rps_little']:9.1f} req/s (wrk: {result['rps']:.1f} completed/s)  p50 {result['p50_us'] / 1000:8.1f} ms"
                f"  p99 {result['p99_us'] / 1000:8.1f} ms  failed {result['failed']}  {target.contender.name} RSS"
                f" {result['rss_mb']:.0f} MB",
                flush=True,
            )
            if result["first_bad"]:
                print(f"    first bad response: {result['first_bad'][:200]}", flush=True)
    # wrk's completed/s misses the requests in flight when it stops, which matters when a
    # request takes a sizeable part of the run (the nested page: seconds at 16 connections);
    # Little's law (16 / mean latency) does not, but counts the client's own scheduling
    # delays, which matter for fast ones. Each group's ratios use one basis, said in the report.
    slow = max(r["p50_us"] for rs in runs.values() for r in rs) > seconds * 1e6 / 8
    basis = "rps_little" if slow else "rps"
    base = targets[0].name
    return {
        "group": group,
        "targets": [t.name for t in targets],
        "runs": dict(runs),
        "basis": basis,
        "ratios": {
            t.name: [
                b[basis] / a[basis] if a[basis] else float("nan") for a, b in zip(runs[base], runs[t.name], strict=True)
            ]
            for t in targets
        },
    }


# --- profile -------------------------------------------------------------------------


def profile(target: Target, seconds: float, connections: int) -> dict:
    """py-spy samples the contender while wrk loads it; the stacks, summed up by function
    (self and total) and by package."""
    raw = OUT / f"profile-{target.name}.txt"
    spy = subprocess.Popen(
        [str(BIN / "py-spy"), "record", "--pid", str(target.contender.process.pid), "--duration", str(int(seconds)),
         "--rate", "100", "--threads", "--format", "raw", "--output", str(raw)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(1)
    wrk(target, seconds - 2, connections)
    _, err = spy.communicate(timeout=60)
    if not raw.exists():
        return {"error": err.decode()[-500:]}
    return summarize_profile(raw)


def frame_name(frame: str) -> tuple[str, str]:
    """('function (module path)', package) of a py-spy frame `function (path:line)`."""
    function, _, where = frame.rpartition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = path.replace(str(ROOT) + "/", "")
    package = path.split("/", 1)[0] if "/" in path else path.removesuffix(".py")
    if path.startswith(("server/", "schema/", "resolvers/", "models/")):
        package = "sessiongraph/" + path.split("/", 1)[0]
    return f"{function} ({path})", package


def summarize_profile(raw: Path, top: int = 25) -> dict:
    """The event loop's thread, where the server's Python runs: its samples by package and
    by function (self and total). Other threads (aiosqlite's, which run SQLite's C code
    with the GIL released) are only counted."""
    own, total, packages, threads = (collections.Counter() for _ in range(4))
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        thread, _, stack = stack.partition(";")
        n = int(count)
        if "MainThread" not in thread:
            threads[thread.split(": ", 1)[-1].split(" (")[0].rstrip("-0123456789")] += n
            continue
        frames = [frame_name(f) for f in stack.split(";") if " (" in f]
        if not frames:
            continue
        samples += n
        own[frames[-1][0]] += n
        packages[frames[-1][1]] += n
        for name in {f[0] for f in frames}:
            total[name] += n
    share = lambda c: [(name, round(100 * n / samples, 1)) for name, n in c.most_common(top)]  # noqa: E731
    # Frames under nearly every sample are the process's scaffolding (main, uvicorn, the
    # event loop): they say nothing of where a request's time goes.
    scaffolding = {name for name, n in total.items() if n >= 0.8 * samples}
    return {
        "samples": samples,
        "other_threads": dict(threads),
        "self": share(own),
        "total": share(collections.Counter({k: v for k, v in total.items() if k not in scaffolding})),
        "packages": share(packages),
    }


# --- report --------------------------------------------------------------------------


def ms(us: float) -> str:
    return f"{us / 1000:.1f}"


def group_table(result: dict, statements: dict) -> list[str]:
    basis = "16 / mean latency" if result["basis"] == "rps_little" else "wrk's completed/s"
    lines = [
        f"#### {result['group']}",
        "",
        f"Ratios from {basis}, round by round.",
        "",
        "| target | req/s: wrk completed/s | req/s: 16/mean latency | ratio to first target | p50 ms | p99 ms | failed | SQL/req | RSS MB after each run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in result["targets"]:
        runs = result["runs"][name]

        def each(value) -> str:
            return " / ".join(value(r) for r in runs)

        ratios = " / ".join(f"{x:.3f}" for x in result["ratios"][name])
        cells = [
            name,
            each(lambda r: f"{r['rps']:.1f}"),
            each(lambda r: f"{r['rps_little']:.1f}"),
            f"{ratios} (mean {statistics.mean(result['ratios'][name]):.3f})",
            each(lambda r: ms(r["p50_us"])),
            each(lambda r: ms(r["p99_us"])),
            str(sum(r["failed"] for r in runs)),
            str(statements.get(name, "")),
            each(lambda r: f"{r['rss_mb']:.0f}"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def report(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"# bench run {results['started']}",
        "",
        f"Command: `{results['command']}`",
        "",
        f"Machine: {m['nproc']} cores, {m['memory_gb']:.1f} GB, Python {m['python']}, {m['wrk']}, "
        f"PostgreSQL {m.get('postgresql') or '-'}, PostGraphile's node {m.get('node') or '-'}; "
        f"load average at start {m['loadavg']}. Code: commit {m['commit']}, {m['uncommitted']} files of the server with "
        "uncommitted changes.",
        f"Data: {results['data']}. wrk: {results['wrk']}.",
        "",
    ]
    for db, found in results["databases"].items():
        imp = found["import"]
        imported = (
            "Import: not timed (--reuse: the database already held the data set)."
            if imp.get("reused")
            else f"Import: {imp['events']} events in {imp['seconds']:.1f} s = **{imp['events_per_s']:.0f} events/s** "
            f"({imp['summary']})."
        )
        lines += [
            f"### {db}",
            "",
            imported,
            f"Server RSS before load: {found['rss_before']:.0f} MB; after all runs: {found['rss_after']:.0f} MB.",
            f"Deep pages: sessions after #{found['deep']['sessions_index']}, events after seq {found['deep']['events_seq']}.",
            "",
        ]
        for result in found["groups"]:
            lines += group_table(result, found["statements"])
        if found.get("documents"):
            lines += documents_table(found["documents"])
    if prof := results.get("profile"):
        lines += [
            f"### Profile: {prof['target']}",
            "",
            f"py-spy, 100 Hz: {prof.get('samples', 0)} samples of the event loop's thread; other threads: "
            f"{prof.get('other_threads')}. Percentages are of the event loop's samples.",
            "",
        ]
        if "error" in prof:
            lines += [f"py-spy failed: {prof['error']}", ""]
        else:
            for kind in ("packages", "self", "total"):
                lines += [f"Top by {kind}:", "", "| % | where |", "| --- | --- |"]
                lines += [f"| {pct} | `{name}` |" for name, pct in prof[kind]]
                lines.append("")
    return "\n".join(lines)


# --- the run -------------------------------------------------------------------------


def machine() -> dict:
    memory = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    return {
        "nproc": os.cpu_count(),
        "memory_gb": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        # The server measured is the working tree's: say which commit, and whether its code
        # had uncommitted changes (several people work in this checkout).
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip(),
        "uncommitted": subprocess.run(
            ["git", "status", "--porcelain", "--", "server", "schema", "resolvers", "models"],
            cwd=ROOT, capture_output=True, text=True,
        ).stdout.count("\n"),
    }


def bench_database(db: str, url: str, args, data_file: Path, events: int, results: dict) -> None:
    print(f"== {db}: importing {data_file.name}", flush=True)
    imported = load_database(url, data_file, args.sessions + 1, events, args.reuse)
    if imported.get("reused"):
        print("   reused: the database already holds this data set (--reuse); no import timed", flush=True)
    else:
        print(f"   {imported['summary']} in {imported['seconds']:.1f} s: {imported['events_per_s']:.0f} events/s", flush=True)
    key = imported.pop("key")
    logs = OUT / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    sg = [str(BIN / "sessiongraph"), "--database-url", url]
    server = Contender("server", [*sg, "serve", "--host", "127.0.0.1", "--port", "{port}"])
    floor = Contender("floor", [sys.executable, str(BENCH / "floor.py"), "--database-url", url, "--port", "{port}"])
    # The same server with the planner off: issue 8 wants both execution paths side by side.
    unplanned = Contender("server-no-planner", [*sg, "serve", "--no-planner", "--host", "127.0.0.1", "--port", "{port}"])
    contenders = [server, floor] + ([unplanned] if args.planner_paths else [])
    peer = None
    if args.compare and db == "postgresql":
        peer = Contender(
            "postgraphile",
            [str(PEER / "node_modules/.bin/node"), str(PEER / "node_modules/postgraphile/dist/cli-run.js"),
             "-C", "graphile.config.mjs"],
            env={"BENCH_POSTGRES_URL": url.replace("postgresql+asyncpg://", "postgres://"), "BENCH_PORT": "{port}"},
            cwd=PEER,
        )  # fmt: skip
        contenders.append(peer)
    try:
        for c in contenders:
            c.start(logs / f"{c.name}-{db}.log")
        rss_before = server.rss_mb()
        nested = document(BENCH / "queries/NestedPage.graphql")
        session_list = document(QUERIES / "SessionList.graphql")
        session_events = document(QUERIES / "SessionEvents.graphql")
        sessions_cursor, sessions_index = deep_session_cursor(server.url, key, session_list, args.deep)
        long_id, events_cursor, events_seq = deep_event_cursor(
            server.url, key, "bench-long", args.long_events, args.deep
        )
        t = {
            "server viewer": Target(f"{db}-server-viewer", server, {"query": document(BENCH / "queries/ViewerUserId.graphql")}, key),
            "server nested": Target(f"{db}-server-nested", server, {"query": nested}, key),
            "floor nested": Target(f"{db}-floor-nested", floor, {"query": nested}, key),
            "sessions first": Target(f"{db}-server-sessions-first", server, {"query": session_list}, key),
            "sessions deep": Target(
                f"{db}-server-sessions-deep", server, {"query": session_list, "variables": {"after": sessions_cursor}}, key
            ),
            "events first": Target(f"{db}-server-events-first", server, {"query": session_events, "variables": {"id": long_id}}, key),
            "events deep": Target(
                f"{db}-server-events-deep",
                server,
                {"query": session_events, "variables": {"id": long_id, "after": events_cursor}},
                key,
            ),
        }  # fmt: skip
        if args.planner_paths:
            for name, target in list(t.items()):
                if name in ("server viewer", "server nested", "sessions first"):
                    t[f"no-planner {name}"] = Target(
                        target.name.replace("-server-", "-no-planner-"), unplanned, target.body, key
                    )
        if peer:
            t["postgraphile nested"] = Target(
                f"{db}-postgraphile-nested",
                peer,
                {"query": document(BENCH / "queries/NestedPage.postgraphile.graphql"), "variables": {"userId": str(generate.USER)}},
                None,
            )
            t["postgraphile typename"] = Target(f"{db}-postgraphile-typename", peer, {"query": "{ __typename }"}, None)
            t["postgraphile list"] = Target(
                f"{db}-postgraphile-list",
                peer,
                {"query": document(BENCH / "queries/SessionList.postgraphile.graphql"), "variables": {"userId": str(generate.USER)}},
                None,
            )
        check_same_page(t)
        statements = asyncio.run(
            count_statements(url, key, {x.name: x.body for x in t.values() if x.contender in (server, unplanned)})
        )
        statements[t["floor nested"].name] = 4  # by construction: the key, sessions, turns, events
        if peer:
            statements[t["postgraphile nested"].name] = "1 (compiled)"
        print(f"   SQL statements per request: {statements}", flush=True)
        documents = []
        if args.planner_paths:
            session_id = answer(t["sessions first"])["sessions"]["edges"][0]["node"]["id"]
            turn_id = post(server.url, {"query": TURN_OF, "variables": {"id": session_id}}, key)["data"]["session"]["turns"]["nodes"][0]["id"]
            document_variables = {
                "SessionList": {}, "SessionWithTurns": {"id": session_id}, "SessionEvents": {"id": long_id},
                "TurnEvents": {"turnId": turn_id}, "Viewer": {},
            }  # fmt: skip
            print("-- every graphql_queries/ document: planner vs --no-planner, in process", flush=True)
            documents = asyncio.run(documents_with_and_without_planner(url, key, document_variables, 200))
        plan = [("nested page", ["server nested", "floor nested"] + (["postgraphile nested"] if peer else []))]
        plan.append(("trivial query", ["server viewer"] + (["postgraphile typename"] if peer else [])))
        if peer:
            plan.append(("list page", ["sessions first", "postgraphile list"]))
        if not args.compare:
            plan += [("sessions: first page vs 95% deep", ["sessions first", "sessions deep"])]
            plan += [("long session's events: first page vs 95% deep", ["events first", "events deep"])]
        if args.planner_paths:
            plan += [
                ("planner vs no planner: nested page", ["server nested", "no-planner server nested"]),
                ("planner vs no planner: trivial query", ["server viewer", "no-planner server viewer"]),
                ("planner vs no planner: list page", ["sessions first", "no-planner sessions first"]),
            ]
        groups = []
        for name, targets in plan:
            print(f"-- {db}: {name}", flush=True)
            groups.append(measure(f"{name} ({db})", [t[x] for x in targets], args.rounds, args.duration, args.connections, args.warm))
        found = {
            "import": imported,
            "statements": statements,
            "groups": groups,
            "rss_before": rss_before,
            "rss_after": server.rss_mb(),
            "documents": documents,
            "deep": {"sessions_index": sessions_index, "events_seq": events_seq},
        }
        results["databases"][db] = found
        if args.profile_on == db:
            print(f"-- {db}: profiling the server on the nested page (py-spy)", flush=True)
            results["profile"] = {"target": t["server nested"].name, **profile(t["server nested"], args.duration, args.connections)}
    finally:
        for c in contenders:
            c.stop()


def check_same_page(t: dict) -> None:
    """The floor serves exactly the server's nested page; PostGraphile the same sessions,
    turns and events."""
    server = answer(t["server nested"])
    if answer(t["floor nested"]) != server:
        raise SystemExit("the floor's nested page differs from the server's")
    if "postgraphile nested" in t:
        peer = answer(t["postgraphile nested"])["allSessions"]["nodes"]
        shape = lambda nodes, turns, events: [  # noqa: E731
            (s["title"], [(len(x[events]["nodes"]), x["taskId"]) for x in s[turns]["nodes"]]) for s in nodes
        ]
        if shape(peer, "turnsBySessionId", "eventsByTurnId") != shape(server["sessions"]["nodes"], "turns", "events"):
            raise SystemExit("PostGraphile's nested page differs from the server's")
        peer_list = [e["node"]["title"] for e in answer(t["postgraphile list"])["allSessions"]["edges"]]
        if peer_list != [e["node"]["title"] for e in answer(t["sessions first"])["sessions"]["edges"]]:
            raise SystemExit("PostGraphile's list page differs from the server's")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", action="store_true", help="PostGraphile too (PostgreSQL only, nested and trivial)")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/sessiongraph_bench")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--events", type=int, default=10)
    parser.add_argument("--long-events", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=8, help="seconds of each wrk run (at most 15)")
    parser.add_argument("--warm", type=int, default=2, help="seconds of the warm-up run of each target")
    parser.add_argument("--rounds", type=int, default=2, help="A B rounds of each measurement")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--reuse", action="store_true", help="keep a database that already holds the data set")
    parser.add_argument("--deep", type=float, default=0.95, help="how deep the deep pages are")
    parser.add_argument("--no-planner-paths", dest="planner_paths", action="store_false",
                        help="skip the planner-vs-no-planner groups (the server with --no-planner)")
    parser.add_argument("--profile-on", default="postgresql", help="database whose server is profiled ('' for none)")
    parser.add_argument("--filtered-list", action="store_true",
                        help="only the filtered session list page against the unfiltered one (--sessions defaults to 200000)")
    args = parser.parse_args()
    args.duration = min(args.duration, 15)
    if args.filtered_list:
        filtered_list_only(args)
        return

    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    OUT.mkdir(exist_ok=True)
    DATA.mkdir(exist_ok=True)
    results = {
        "started": started,
        "command": " ".join(["python", "bench/run.py", *sys.argv[1:]]),
        "machine": {**machine(), "wrk": ensure_wrk()},
        "databases": {},
        "wrk": f"2 threads, {args.connections} connections, {args.duration:g} s a run after a {args.warm:g} s warm-up, "
        f"{args.rounds} rounds alternated",
    }
    databases = {"sqlite": f"sqlite+aiosqlite:///{DATA}/bench.db", "postgresql": args.postgres_url}
    wanted = [d for d in args.databases.split(",") if d]
    if args.compare:
        wanted = ["postgresql"]
        results["machine"]["node"] = ensure_postgraphile()
    if "postgresql" in wanted:
        version = asyncio.run(postgres_version(args.postgres_url))
        results["machine"]["postgresql"] = version
        if version is None:
            wanted.remove("postgresql")
            if args.compare:
                raise SystemExit("bench-compare needs PostgreSQL")
    if args.profile_on not in wanted:
        args.profile_on = wanted[-1] if wanted and args.profile_on else ""

    data_file = DATA / f"bench-{args.sessions}x{args.turns}x{args.events}+{args.long_events}.jsonl"
    events = args.sessions * args.turns * args.events + args.long_events
    if not data_file.exists():
        generate.write(str(data_file), args.sessions, args.turns, args.events, args.long_events)
    results["data"] = (
        f"{args.sessions} sessions x {args.turns} turns x {args.events} events + one session of "
        f"{args.long_events} events ({events} events, {data_file.stat().st_size / 1e6:.0f} MB of JSON Lines)"
    )
    began = time.monotonic()
    for db in wanted:
        bench_database(db, databases[db], args, data_file, events, results)
    results["seconds"] = time.monotonic() - began

    stamp = started.replace(":", "")
    text = report(results)
    (OUT / f"{stamp}.json").write_text(json.dumps(results, indent=1))
    (OUT / f"{stamp}.md").write_text(text)
    print("\n" + text)
    print(f"\n(report: {OUT / (stamp + '.md')}; {results['seconds']:.0f} s)")


def filtered_list_only(args) -> None:
    """`--filtered-list`: the filtered list page on each database, nothing else."""
    if "--sessions" not in sys.argv:
        args.sessions = 200_000
    OUT.mkdir(exist_ok=True)
    DATA.mkdir(exist_ok=True)
    ensure_wrk()
    results = {"databases": {}}
    if "--postgres-url" not in sys.argv:  # a database of its own: the full bench's is left alone
        args.postgres_url += "_filtered"
    databases = {"sqlite": f"sqlite+aiosqlite:///{DATA}/bench-filtered.db", "postgresql": args.postgres_url}
    for db in [d for d in args.databases.split(",") if d]:
        if db == "postgresql" and asyncio.run(postgres_version(args.postgres_url)) is None:
            continue
        bench_filtered_list(db, databases[db], args, results)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H%M%SZ")
    (OUT / f"filtered-{stamp}.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"(raw results: {OUT / f'filtered-{stamp}.json'})")


if __name__ == "__main__":
    main()
