"""Settings of a server process, from the command line or the environment. Every setting has
an environment variable (the command line sets them for uvicorn's worker processes); the
README's configuration table lists them."""

import os
from dataclasses import dataclass, field
from pathlib import Path

from sessiongraph.models import database_url
from sessiongraph.gate.persisted import DEFAULT_TRUSTED_DIR
from sessiongraph.gate.limits import Limits
from sessiongraph.observability.tracing import wanted as tracing_wanted

# setting -> environment variable, for the numbers and paths (flags are read below).
ENV = {
    "max_depth": "SESSIONGRAPH_MAX_DEPTH",
    "max_nodes": "SESSIONGRAPH_MAX_NODES",
    "max_fields": "SESSIONGRAPH_MAX_FIELDS",
    "max_document_bytes": "SESSIONGRAPH_MAX_DOCUMENT_BYTES",
    "max_tokens": "SESSIONGRAPH_MAX_TOKENS",
    "max_body_bytes": "SESSIONGRAPH_MAX_BODY_BYTES",
    "request_timeout": "SESSIONGRAPH_REQUEST_TIMEOUT",
    "apq_cache_bytes": "SESSIONGRAPH_APQ_CACHE_BYTES",
    "api_key_cache_seconds": "SESSIONGRAPH_API_KEY_CACHE_SECONDS",
    "trusted_documents_dir": "SESSIONGRAPH_TRUSTED_DOCUMENTS",
    "db_pool_size": "SESSIONGRAPH_DB_POOL_SIZE",
    "metrics_port": "SESSIONGRAPH_METRICS_PORT",
}
FLAGS = {
    "no_graphiql": "SESSIONGRAPH_NO_GRAPHIQL",
    "no_introspection": "SESSIONGRAPH_NO_INTROSPECTION",
    "trusted_documents_only": "SESSIONGRAPH_TRUSTED_DOCUMENTS_ONLY",
    "no_planner": "SESSIONGRAPH_NO_PLANNER",
    "no_federation": "SESSIONGRAPH_NO_FEDERATION",
}

# Set by `sessiongraph serve --demo` for its worker processes, never by hand.
DEMO_KEY = "SESSIONGRAPH_DEMO_KEY"


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in {"1", "true", "yes", "on"}


def _env_number(name: str, kind: type, default, zero: bool = False):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be a {kind.__name__} number; got {raw!r}") from None
    if value < 0 or (value == 0 and not zero):
        raise ValueError(f"{name} must be {'zero or more' if zero else 'positive'}; got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    database_url: str
    graphiql: bool = True
    # Off also turns GraphiQL off: it cannot work without introspection.
    introspection: bool = True
    limits: Limits = field(default_factory=Limits)
    max_body_bytes: int = 1_000_000
    request_timeout: float = 30.0  # seconds a GraphQL request may run
    trusted_documents_dir: Path = DEFAULT_TRUSTED_DIR
    trusted_documents_only: bool = False
    apq_cache_bytes: int = 10_000_000  # total size of the documents registered through APQ
    planner: bool = True  # planned execution of covered queries (planner/)
    # The endpoint is an Apollo Federation v2 subgraph: `_service`, `_entities`, @key (schema/federation.py).
    federation: bool = True
    # How long a live API key is trusted before it is looked up again; a key revoked by
    # another process keeps working in this one up to this long. 0: looked up every request.
    api_key_cache_seconds: float = 5.0
    # Database connections the process keeps open. Past them up to 10 more are opened, each
    # closed again after its request: with more requests in flight than this, every extra
    # one pays for a new connection (on PostgreSQL a new backend process), which halved the
    # list page's rate at 16 concurrent requests with SQLAlchemy's default of 5.
    db_pool_size: int = 20
    # `sessiongraph serve --demo` only: the demo's key, put in GraphiQL's Headers tab.
    demo_key: str | None = None
    # Record Prometheus metrics (observability/metrics.py); `serve --metrics-port` serves them.
    metrics: bool = False
    # Spans for OpenTelemetry (observability/tracing.py): on when OTEL_EXPORTER_OTLP_ENDPOINT
    # or OTEL_TRACES_EXPORTER is set.
    tracing: bool = False

    @classmethod
    def from_env(cls, database: str | None = None) -> "Settings":
        default, default_limits = cls(database_url=""), Limits()
        introspection = not env_flag(FLAGS["no_introspection"])
        return cls(
            database_url=database_url(database),
            graphiql=introspection and not env_flag(FLAGS["no_graphiql"]),
            introspection=introspection,
            limits=Limits(
                **{
                    name: _env_number(ENV[name], int, getattr(default_limits, name))
                    for name in ("max_depth", "max_nodes", "max_fields", "max_document_bytes", "max_tokens")
                }
            ),
            max_body_bytes=_env_number(ENV["max_body_bytes"], int, default.max_body_bytes),
            request_timeout=_env_number(ENV["request_timeout"], float, default.request_timeout),
            trusted_documents_dir=Path(os.environ.get(ENV["trusted_documents_dir"]) or default.trusted_documents_dir),
            trusted_documents_only=env_flag(FLAGS["trusted_documents_only"]),
            apq_cache_bytes=_env_number(ENV["apq_cache_bytes"], int, default.apq_cache_bytes),
            planner=not env_flag(FLAGS["no_planner"]),
            federation=not env_flag(FLAGS["no_federation"]),
            api_key_cache_seconds=_env_number(
                ENV["api_key_cache_seconds"], float, default.api_key_cache_seconds, zero=True
            ),
            db_pool_size=_env_number(ENV["db_pool_size"], int, default.db_pool_size),
            demo_key=os.environ.get(DEMO_KEY) or None,
            metrics=_env_number(ENV["metrics_port"], int, None) is not None,
            tracing=tracing_wanted(),
        )
