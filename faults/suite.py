"""The fault scenarios and what they measure. Each runs a real `sessiongraph serve` (or
`sessiongraph import`) process, writers that retry every append with the same dedup keys
until it is acknowledged, a fault at a random moment, then compares what was acknowledged
with what the database holds: lost (acknowledged, not stored), doubled, gaps in the seqs;
the failed requests by code; requests answered later than the request timeout allows;
the recovery time (from the fault's end to the next acknowledged append)."""

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from sqlalchemy import func, select

from sessiongraph.gate.auth import create_key
from sessiongraph.migrations import upgrade_async
from sessiongraph.models import Event, Session, create_engine
from sessiongraph.models.database import scratch_postgres_database
from sessiongraph.resolvers.ids import from_global_id

CREATE = "mutation($input: CreateSessionInput!) { createSession(input: $input) { session { id } } }"
APPEND = "mutation($input: AppendEventsInput!) { appendEvents(input: $input) { events { seq } } }"
UNCODED = {"INTERNAL_SERVER_ERROR", "HTTP 500", "no code"}
# The interpreter whose `sessiongraph` is put under faults (serve, import): this one, or
# another install's (`--subject-python`, to measure another build the same way).
SUBJECT_PYTHON = sys.executable


@dataclass
class Tally:
    """What one scenario saw."""

    name: str
    acknowledged: int = 0
    stored: int = 0
    lost: int = 0
    doubled: int = 0
    gaps: int = 0
    requests: int = 0
    failures: Counter = field(default_factory=Counter)
    past_timeout: int = 0
    slowest: float = 0.0
    recoveries: list[float] = field(default_factory=list)
    outages: list[float] = field(default_factory=list)  # from the fault's start to the next acknowledged append
    notes: list[str] = field(default_factory=list)

    @property
    def uncoded(self) -> int:
        return sum(n for what, n in self.failures.items() if what in UNCODED)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.doubled or self.gaps or self.past_timeout or self.uncoded)

    def merge(self, other: "Tally") -> None:
        for name in ("acknowledged", "stored", "lost", "doubled", "gaps", "requests", "past_timeout"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures.update(other.failures)
        self.slowest = max(self.slowest, other.slowest)
        self.recoveries += other.recoveries
        self.outages += other.outages
        self.notes += other.notes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`sessiongraph serve` in a process of its own, on a fixed port across restarts."""

    # Every request looks its key up (`--api-key-cache-seconds 0`): the harder case, where
    # the lookup itself meets the failing database.
    key_cache_seconds = 0.0

    def __init__(self, url: str, request_timeout: float, log_dir: Path) -> None:
        self.url, self.request_timeout, self.port = url, request_timeout, free_port()
        self.log = open(log_dir / f"serve-{self.port}.log", "a")  # noqa: SIM115
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    async def start(self) -> None:
        import httpx

        command = [
            SUBJECT_PYTHON, "-m", "sessiongraph.cli", "--database-url", self.url, "serve", "--port", str(self.port),
            "--request-timeout", str(self.request_timeout), "--shutdown-grace", "1",
            "--api-key-cache-seconds", str(self.key_cache_seconds),
        ]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        async with httpx.AsyncClient() as client:
            for _ in range(600):
                if self.process.poll() is not None:
                    raise RuntimeError(f"the server exited with {self.process.returncode}; see {self.log.name}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1)).status_code == 200:
                        return
                await asyncio.sleep(0.05)
        raise RuntimeError("the server did not start within 30 s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


class Appenders:
    """`count` writers, each appending `batches` batches of `batch` events to a session of its
    own; every batch is retried with the same dedup keys until it is acknowledged."""

    def __init__(self, endpoint: str, key: str, session_ids: list[str], batches: int, batch: int, request_timeout: float, tally: Tally) -> None:
        self.endpoint, self.key, self.session_ids = endpoint, key, session_ids
        self.batches, self.batch, self.tally = batches, batch, tally
        # The longest a request may take: the timeout, the deadline timer's tick, the answer.
        self.limit = request_timeout + min(1.0, max(0.01, request_timeout / 10)) + 0.5
        self.acknowledged: dict[str, list[str]] = {s: [] for s in session_ids}
        self.fault_started: float | None = None  # set by the scenario as its fault starts
        self.fault_ended: float | None = None  # and when it is over
        self.progress = 0  # batches acknowledged, all writers

    async def run(self) -> None:
        import httpx

        limits = httpx.Limits(max_connections=len(self.session_ids))
        async with httpx.AsyncClient(timeout=self.limit + 30, limits=limits) as client:
            await asyncio.gather(*(self._write(client, n, s) for n, s in enumerate(self.session_ids)))

    async def _write(self, client, n: int, session_id: str) -> None:
        import httpx

        for b in range(self.batches):
            keys = [f"w{n}-b{b}-e{i}" for i in range(self.batch)]
            events = [{"type": "log", "message": key, "dedupKey": key} for key in keys]
            body = {"query": APPEND, "variables": {"input": {"sessionId": session_id, "events": events}}}
            while True:
                started = time.monotonic()
                self.tally.requests += 1
                try:
                    response = await client.post(self.endpoint, json=body, headers={"X-API-Key": self.key})
                except httpx.TransportError as error:
                    self.tally.failures[f"no answer ({type(error).__name__})"] += 1
                    await asyncio.sleep(0.05)
                    continue
                seconds = time.monotonic() - started
                self.tally.slowest = max(self.tally.slowest, seconds)
                if seconds > self.limit:
                    self.tally.past_timeout += 1
                answer = orjson.loads(response.content) if response.content else {}
                if response.status_code == 200 and not answer.get("errors"):
                    self.acknowledged[session_id] += keys
                    self.progress += 1
                    if self.fault_ended is not None:
                        self.tally.recoveries.append(time.monotonic() - self.fault_ended)
                        self.tally.outages.append(time.monotonic() - self.fault_started)
                        self.fault_ended = None
                    break
                errors = answer.get("errors") or [{}]
                code = (errors[0].get("extensions") or {}).get("code") or ("HTTP 500" if response.status_code == 500 else "no code")
                self.tally.failures[code if code in UNCODED else f"{code} {response.status_code}"] += 1
                await asyncio.sleep(min(float(response.headers.get("retry-after", "0.05")), 0.2))


async def prepare(url: str) -> tuple[str, uuid.UUID, uuid.UUID]:
    """Migrates the database and makes an ADMIN key: (key, org, user)."""
    await upgrade_async(url)
    engine = create_engine(url)
    try:
        org, user = uuid.uuid4(), uuid.uuid4()
        _, key = await create_key(engine, org, user, "ADMIN")
        return key, org, user
    finally:
        await engine.dispose()


async def new_sessions(endpoint: str, key: str, count: int) -> list[str]:
    import httpx

    async with httpx.AsyncClient(timeout=30) as client:
        ids = []
        for n in range(count):
            response = await client.post(endpoint, json={"query": CREATE, "variables": {"input": {"title": f"fault writer {n}"}}}, headers={"X-API-Key": key})
            ids.append(response.json()["data"]["createSession"]["session"]["id"])
        return ids


async def check_stored(url: str, acknowledged: dict[str, list[str]], tally: Tally) -> None:
    """Compares the acknowledged dedup keys with the events stored, per session (global ids
    of `Session:` decoded by the server's own rule)."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            for global_id, keys in acknowledged.items():
                _, session_id = from_global_id(global_id)
                rows = (await connection.execute(
                    select(Event.seq, Event.dedup_key).where(Event.session_id == session_id).order_by(Event.seq)
                )).all()
                stored = Counter(row.dedup_key for row in rows)
                tally.acknowledged += len(keys)
                tally.stored += len(rows)
                tally.lost += sum(1 for key in keys if key not in stored)
                tally.doubled += sum(n - 1 for n in stored.values() if n > 1)
                tally.gaps += sum(1 for i, row in enumerate(rows, 1) if row.seq != i)
    finally:
        await engine.dispose()


async def until(predicate, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


# -- the scenarios


async def faulted_trial(url: str, key: str, writers: int, batches: int, batch: int, timeout: float, log_dir: Path,
                        tally: Tally, fault, after=None) -> None:
    """One trial: a server under `writers` concurrent appenders, `fault(server)` at a random
    moment of the load, then every acknowledged event checked as stored (and `after(server,
    tally)`, when given)."""
    server = Server(url, timeout, log_dir)
    try:
        await server.start()
        sessions = await new_sessions(server.endpoint, key, writers)
        load = Appenders(server.endpoint, key, sessions, batches, batch, timeout, tally)
        running = asyncio.ensure_future(load.run())
        await until(lambda: load.progress >= random.randint(1, max(1, writers * batches // 2)), 60)
        load.fault_started = time.monotonic()
        await fault(server)
        load.fault_ended = time.monotonic()
        await asyncio.wait_for(running, 600)
        await check_stored(url, load.acknowledged, tally)
        if after is not None:
            await after(server, tally)
    finally:
        server.stop()


async def server_kill(url: str, trials: int, writers: int, batches: int, batch: int, timeout: float, log_dir: Path) -> Tally:
    """kill -9 of the server at a random moment under `writers` concurrent appenders; started
    again at once on the same port."""
    tally = Tally("server kill -9")
    key, _, _ = await prepare(url)

    async def kill_and_start(server: Server) -> None:
        server.kill()
        await server.start()

    for _ in range(trials):
        await faulted_trial(url, key, writers, batches, batch, timeout, log_dir, tally, kill_and_start)
    return tally


def import_file(folder: Path, org: uuid.UUID, user: uuid.UUID, sessions: int, turns: int, events: int) -> tuple[Path, dict[str, int]]:
    """A JSON Lines file of `sessions` sessions; (its path, events expected per session id)."""
    path = folder / f"import-{uuid.uuid4().hex[:8]}.jsonl"
    expected = {}
    with path.open("wb") as out:
        for s in range(sessions):
            session_id = str(uuid.uuid4())
            line = {
                "session_id": session_id, "org_id": str(org), "user_id": str(user), "title": f"imported {s}",
                "created_at": "2025-10-28T06:00:00Z",
                "turns": [
                    {"task_id": f"t{t}", "created_at": "2025-10-28T06:00:01Z", "status": "COMPLETED",
                     "events": [{"type": "log", "message": f"s{s} t{t} e{e}", "timestamp": "2025-10-28T06:00:02Z"} for e in range(events)]}
                    for t in range(turns)
                ],
            }
            out.write(orjson.dumps(line) + b"\n")
            expected[session_id] = turns * events
    return path, expected


async def check_import(url: str, expected: dict[str, int], tally: Tally) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            for session_id, count in expected.items():
                sid = uuid.UUID(session_id)
                rows = (await connection.execute(select(Event.seq).where(Event.session_id == sid).order_by(Event.seq))).all()
                sessions = await connection.scalar(select(func.count()).select_from(Session).where(Session.id == sid))
                tally.acknowledged += count
                tally.stored += len(rows)
                tally.lost += max(0, count - len(rows))
                tally.doubled += max(0, len(rows) - count) + max(0, sessions - 1)
                tally.gaps += sum(1 for i, row in enumerate(rows, 1) if row.seq != i)
    finally:
        await engine.dispose()


def run_import(url: str, path: Path, log) -> subprocess.Popen:
    return subprocess.Popen(
        [SUBJECT_PYTHON, "-m", "sessiongraph.cli", "--database-url", url, "import", str(path)], stdout=log, stderr=subprocess.STDOUT
    )


async def import_kill(url: str, trials: int, sessions: int, log_dir: Path, kill_within: tuple[float, float] = (0.5, 3.0)) -> Tally:
    """kill -9 of `sessiongraph import` at a random moment, then the same file imported again:
    every session whole, once."""
    tally = Tally("import kill -9")
    _, org, user = await prepare(url)
    with open(log_dir / "import.log", "a") as log:
        for _ in range(trials):
            path, expected = import_file(log_dir, org, user, sessions, 3, 20)
            started = time.monotonic()
            process = run_import(url, path, log)
            await asyncio.sleep(random.uniform(*kill_within))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            else:
                tally.notes.append(f"one import ended before its kill ({time.monotonic() - started:.1f} s)")
            process.wait()
            again = run_import(url, path, log)
            tally.requests += 1
            if (code := await asyncio.to_thread(again.wait)) != 0:
                tally.failures[f"re-import exit {code}"] += 1
            await check_import(url, expected, tally)
            path.unlink()
    return tally


async def postgres_faults(trials: int, writers: int, batches: int, batch: int, timeout: float, freeze_seconds: float, log_dir: Path) -> list[Tally]:
    """A private PostgreSQL under the server and its appenders: restarted (pg_ctl restart -m
    fast), then frozen (SIGSTOP of every process of the instance) for `freeze_seconds`."""
    from sessiongraph.faults.postgres import private_postgres

    restart, freeze = Tally("private PostgreSQL restarted"), Tally("private PostgreSQL frozen (SIGSTOP)")
    with private_postgres() as instance:
        url = instance.url
        key, _, _ = await prepare(url)

        async def restart_instance(_server: Server) -> None:
            await asyncio.to_thread(instance.restart)

        async def freeze_instance(_server: Server) -> None:
            pids = instance.freeze()
            await asyncio.sleep(freeze_seconds)
            instance.thaw(pids)

        for tally, fault in ((restart, restart_instance), (freeze, freeze_instance)):
            for _ in range(trials):
                await faulted_trial(url, key, writers, batches, batch, timeout, log_dir, tally, fault, after=ready_after)
    return [restart, freeze]


async def ready_after(server: Server, tally: Tally) -> None:
    """/readyz once the fault is over: 200 (the server recovered by itself)."""
    import httpx

    async with httpx.AsyncClient(timeout=5) as client:
        status = (await client.get(f"http://127.0.0.1:{server.port}/readyz")).status_code
    if status != 200:
        tally.notes.append(f"/readyz answered {status} after the fault")


async def sqlite_processes(url: str, writers: int, batches: int, batch: int, timeout: float, importers: int, sessions: int, log_dir: Path) -> Tally:
    """One SQLite file written at once by the server (its appenders) and `importers` import
    processes."""
    tally = Tally("SQLite: server + import processes")
    key, org, user = await prepare(url)
    server = Server(url, timeout, log_dir)
    try:
        await server.start()
        ids = await new_sessions(server.endpoint, key, writers)
        load = Appenders(server.endpoint, key, ids, batches, batch, timeout, tally)
        files = [import_file(log_dir, org, user, sessions, 3, 20) for _ in range(importers)]
        with open(log_dir / "import.log", "a") as log:
            processes = [run_import(url, path, log) for path, _ in files]
            await load.run()
            for process in processes:
                if (code := await asyncio.to_thread(process.wait)) != 0:
                    tally.failures[f"import exit {code}"] += 1
        await check_stored(url, load.acknowledged, tally)
        for path, expected in files:
            await check_import(url, expected, tally)
            path.unlink()
    finally:
        server.stop()
    return tally


def spread(seconds: list[float]) -> str:
    return f"{sorted(seconds)[len(seconds) // 2]:.2f} s / {max(seconds):.2f} s" if seconds else "-"


def report(tallies: list[Tally], header: str) -> str:
    lines = [header, "", "| scenario | acknowledged | stored | lost | doubled | gaps | requests | failed requests by code | past timeout | slowest answer | recovery (median / max) | fault to first acknowledged append (median / max) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in tallies:
        failures = ", ".join(f"{what}: {n}" for what, n in sorted(t.failures.items())) or "none"
        recovery, outage = spread(t.recoveries), spread(t.outages)
        lines.append(
            f"| {t.name} | {t.acknowledged} | {t.stored} | {t.lost} | {t.doubled} | {t.gaps} | {t.requests} | {failures} | "
            f"{t.past_timeout} | {t.slowest:.2f} s | {recovery} | {outage} |"
        )
    notes = [f"- {t.name}: {note}" for t in tallies for note in dict.fromkeys(t.notes)]
    return "\n".join(lines + ([""] + notes if notes else []))


@contextlib.contextmanager
def scratch():
    with tempfile.TemporaryDirectory(prefix="sessiongraph-faults-") as folder:
        yield Path(folder)


def sqlite_url(folder: Path) -> str:
    return f"sqlite+aiosqlite:///{folder}/faults-{uuid.uuid4().hex[:8]}.db"


def postgres_database(admin_url: str):
    """A new database on the server `admin_url` names; dropped afterwards."""
    return scratch_postgres_database(admin_url, "sessiongraph_faults")


os.environ.setdefault("PYTHONUNBUFFERED", "1")
