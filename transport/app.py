"""The ASGI application: /graphql (HTTP and WebSocket), GraphiQL's assets under
/graphiql/static/, /healthz, /readyz, download links under /downloads/, /v1/traces (OTLP
ingest)."""

import asyncio
import contextlib
import logging
import signal
from dataclasses import replace

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute

from sessiongraph.config import Settings
from sessiongraph.downloads.export import current_scope
from sessiongraph.transport.downloads import download_endpoint
from sessiongraph.transport.http import GraphQLEndpoint
from sessiongraph.transport.otlp import TracesEndpoint
from sessiongraph.models import create_engine
from sessiongraph.models.database import busy_timeout_within
from sessiongraph.models.indexer import keep_indexing
from sessiongraph.gate.operation import RETRY_HEADERS, Gate
from sessiongraph.gate.persisted import PersistedDocuments, load_manifest
from sessiongraph.live.broker import broker_for
from sessiongraph.observability.watch import Watch
from sessiongraph.schema import schema as default_schema
from sessiongraph.transport.shutdown import ClosableWebSockets, on_stop_signals
from sessiongraph.transport.websocket import GraphQLWebSocket, SocketLimits


TRACE_HEADERS = (b"traceparent", b"tracestate")
READY_PROBE_SECONDS = 1.0  # /readyz answers 503 when the database has not answered SELECT 1 by then


class App(Starlette):
    """Starlette, except that GraphQL over HTTP goes straight to its endpoint: the endpoint
    answers every error itself, so routing and Starlette's error middleware only added time
    to each request (about a tenth of a small query's). WebSocket, /healthz, /readyz, a
    trailing slash and a mounted root path take Starlette's way."""

    def __init__(self, graphql, watch=None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.graphql = graphql
        self.traced = watch if watch is not None and watch.tracer is not None else None

    async def __call__(self, scope, receive, send) -> None:
        if self.traced is not None and scope["type"] in ("http", "websocket"):
            # The caller's W3C trace context, for the spans of what this request runs.
            carrier = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"] if name.lower() in TRACE_HEADERS}
            with self.traced.continuing(carrier):
                await self.route(scope, receive, send)
        else:
            await self.route(scope, receive, send)

    async def route(self, scope, receive, send) -> None:
        current_scope.set(scope)  # where download links point (downloads/export.py)
        if scope["type"] == "http" and scope["path"] == "/graphql" and not scope.get("root_path"):
            scope["app"] = self
            await self.graphql(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, engine=None, socket_limits: SocketLimits | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    engine = engine or create_engine(
        settings.database_url, busy_timeout_within(settings.request_timeout), pool_size=settings.db_pool_size
    )

    async def healthz(request):
        return PlainTextResponse("ok")

    async def readyz(request):
        # Bounded: a database that does not answer (stopped, frozen, unreachable) is not ready
        # within READY_PROBE_SECONDS; the probe's connection is then cut, not waited for.
        try:
            await gate_probe.bounded(probe)
        except Exception as error:  # any failure to reach the database means: not ready
            logging.getLogger("sessiongraph").warning("database not answering: %s", error)
            return PlainTextResponse("database unavailable", status_code=503, headers=RETRY_HEADERS)
        return PlainTextResponse("ok")

    async def probe():
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    def stopping(signum: int) -> None:
        logging.getLogger("sessiongraph").info(
            "%s: no new connections; requests in flight finish, WebSockets close", signal.Signals(signum).name
        )
        asyncio.ensure_future(websockets.go_away())

    @contextlib.asynccontextmanager
    async def lifespan(app):
        on_stop_signals(stopping)
        indexer = asyncio.create_task(keep_indexing(engine), name="sessiongraph-indexer")
        yield
        indexer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await indexer
        await broker_for(engine).close()
        await engine.dispose()

    schema = default_schema.configured(settings.limits, settings.introspection, settings.planner, settings.federation)
    manifest = load_manifest(settings.trusted_documents_dir)
    if settings.trusted_documents_only:
        logging.getLogger("sessiongraph").info("trusted documents only: %d loaded", len(manifest))
    persisted = PersistedDocuments(manifest, settings.trusted_documents_only, settings.apq_cache_bytes)
    watch = None
    if settings.metrics or settings.tracing:
        watch = Watch(
            engine, metrics=settings.metrics, tracing=settings.tracing, pool_size=settings.db_pool_size, trusted_documents=manifest.values()
        )
    gate = Gate(schema, engine, settings, persisted, watch)
    # /readyz's own deadline: far shorter than a request's.
    gate_probe = Gate(schema, engine, replace(settings, request_timeout=READY_PROBE_SECONDS), persisted)
    graphql = GraphQLEndpoint(gate)
    websockets = ClosableWebSockets(GraphQLWebSocket(gate, socket_limits))
    app = App(
        graphql,
        watch,
        routes=[
            Route("/graphql", graphql, methods=None),
            WebSocketRoute("/graphql", websockets),
            Route("/graphiql/static/{name}", graphql.explorer, methods=["GET", "HEAD"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/downloads/{token}", download_endpoint(engine), methods=["GET"]),
            Route("/v1/traces", TracesEndpoint(gate), methods=None),  # OpenTelemetry ingest
        ],
        lifespan=lifespan,
    )
    app.state.engine = engine
    return app
