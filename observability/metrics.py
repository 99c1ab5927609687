"""Prometheus metrics of `sessiongraph serve --metrics-port P`: operations by name, type and
outcome, their latency and SQL statements, the planner's answers, open subscriptions and
WebSockets, events written and the database pool. Served in Prometheus' text format on a
listener of their own (127.0.0.1 unless `--metrics-host`), never on the public port. Under
`--workers N` every worker writes its figures to files (prometheus-client's multiprocess
mode) and the listener, in the parent process, adds them up at each scrape."""

import atexit
import os
import shutil
import tempfile

from prometheus_client import Counter, Gauge, Histogram

# Operation names are labels: each distinct one is a time series per outcome and bucket.
# Those of the trusted documents are always kept; past this many others a name is "other",
# so no client can grow the server's memory or the scraper's by naming operations.
MAX_OTHER_NAMES = 50

OPERATIONS = Counter(
    "sessiongraph_operations", "GraphQL operations, by operation name, type and outcome (ok, or the code of the first error)",
    ["name", "type", "outcome"],
)
LATENCY = Histogram(
    "sessiongraph_operation_seconds", "Time from the gate to the result, by operation name and type", ["name", "type"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
STATEMENTS = Histogram(
    "sessiongraph_operation_sql_statements", "SQL statements an operation ran, by operation type", ["type"],
    buckets=(0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 100),
)
PLANNER = Counter(
    "sessiongraph_planner_queries",
    "Queries by who answered them: planned (the planner), fallback (the planner handed over to graphql-core), unplanned (not covered)",
    ["answer"],
)
SUBSCRIPTIONS = Gauge("sessiongraph_subscriptions_open", "Subscriptions streaming now", multiprocess_mode="livesum")
WEBSOCKETS = Gauge("sessiongraph_websocket_connections_open", "WebSocket connections open now", multiprocess_mode="livesum")
EVENTS_WRITTEN = Counter("sessiongraph_events_written", "Events written (appendEvents, sessions stored with their events), counted before their commit")
POOL_SIZE = Gauge("sessiongraph_db_pool_size", "Database connections each process keeps open (summed over processes)", multiprocess_mode="livesum")
POOL_OPEN = Gauge("sessiongraph_db_connections_open", "Database connections open now", multiprocess_mode="livesum")
POOL_IN_USE = Gauge("sessiongraph_db_connections_in_use", "Database connections checked out of the pool now", multiprocess_mode="livesum")

# Whether this process records anything: set by `watch_pool` (create_app, when metrics are on).
enabled = False


class OperationNames:
    """The label an operation name gets: itself when a trusted document declares it or it is
    one of the first MAX_OTHER_NAMES others seen, else "other"."""

    def __init__(self, trusted: set[str]) -> None:
        self.known = set(trusted)
        self.others = 0

    def label(self, name: str | None) -> str:
        if not name:
            return "anonymous"
        if name in self.known:
            return name
        if self.others >= MAX_OTHER_NAMES:
            return "other"
        self.others += 1
        self.known.add(name)
        return name


def events_written(count: int) -> None:
    if enabled:
        EVENTS_WRITTEN.inc(count)


def _checkout(*_args) -> None:
    POOL_IN_USE.inc()


def _checkin(*_args) -> None:
    POOL_IN_USE.dec()


def _connect(*_args) -> None:
    POOL_OPEN.inc()


def _close(*_args) -> None:
    POOL_OPEN.dec()


def watch_pool(engine, pool_size: int) -> None:
    """Keeps the pool's gauges by its events (public SQLAlchemy API); once per engine. The
    events, not a read at scrape time: under --workers the scrape is served by the parent
    process, which has no pool."""
    from sqlalchemy import event

    global enabled
    enabled = True
    target = engine.sync_engine
    if event.contains(target, "checkout", _checkout):
        return
    for name, listener in (("checkout", _checkout), ("checkin", _checkin), ("connect", _connect), ("close", _close), ("close_detached", _close)):
        event.listen(target, name, listener)
    POOL_SIZE.inc(pool_size)


def serve_metrics(host: str, port: int, workers: int) -> None:
    """Starts the /metrics listener in a thread of this process. With several workers, first
    points them (through the environment they inherit) at a fresh directory for their files,
    and serves the sum of those files."""
    from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = REGISTRY
    if workers > 1:
        directory = tempfile.mkdtemp(prefix="sessiongraph-metrics-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)
    start_http_server(port, addr=host, registry=registry)
