"""The `sessiongraph` console script."""

import argparse
import asyncio
import sys
import uuid

from sessiongraph.models import create_engine, database_url


def _run(coroutine_factory, url: str):
    async def main():
        engine = create_engine(url)
        try:
            return await coroutine_factory(engine)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def cmd_migrate(args) -> int:
    from sessiongraph.migrations import upgrade

    upgrade(args.url)
    print(f"migrated {args.url}")
    return 0


def migrate_quietly(url: str) -> str:
    """`upgrade`, saying in one line what it did instead of Alembic's line per step."""
    import logging
    import re

    from sqlalchemy.engine import make_url

    from sessiongraph.migrations import head_revision, upgrade

    steps: list[str] = []

    class Steps(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if (message := record.getMessage()).startswith("Running upgrade"):
                steps.append(message)

    alembic = logging.getLogger("alembic.runtime.migration")
    handler, level, propagate = Steps(), alembic.level, alembic.propagate
    alembic.addHandler(handler)
    alembic.setLevel(logging.INFO)
    alembic.propagate = False
    try:
        upgrade(url)
    finally:
        alembic.removeHandler(handler)
        alembic.setLevel(level)
        alembic.propagate = propagate
    shown = make_url(url).render_as_string(hide_password=True)
    if not steps:
        return f"database: {shown}, schema up to date ({head_revision() or 'head'})"
    revision = re.search(r"-> (\S+?),", steps[-1])
    return f"database: {shown}, schema migrated to {revision.group(1) if revision else 'head'} ({len(steps)} step{'s' * (len(steps) > 1)})"


def cmd_serve(args) -> int:
    import logging
    import logging.config
    import os
    import signal

    import uvicorn

    from sessiongraph.config import DEMO_KEY, ENV, FLAGS, Settings
    from sessiongraph.observability.logs import log_config

    logging_config = log_config(args.log_format)
    logging.config.dictConfig(logging_config)
    log = logging.getLogger("sessiongraph")
    # The worker processes read their settings from the environment.
    for name, variable in ENV.items():
        if getattr(args, name) is not None:
            os.environ[variable] = str(getattr(args, name))
    for name, variable in FLAGS.items():
        if getattr(args, name):
            os.environ[variable] = "1"
    os.environ.pop(DEMO_KEY, None)  # only --demo below prefills GraphiQL with a key
    try:
        Settings.from_env(args.url)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.shutdown_grace < 0:
        print("error: --shutdown-grace must be zero or more", file=sys.stderr)
        return 2
    from sqlalchemy.engine import make_url

    from sessiongraph.live.broker import processes_refused

    if refused := processes_refused(make_url(args.url).get_backend_name(), args.workers):
        print(f"error: {refused}", file=sys.stderr)
        return 2
    database = migrate_quietly(args.url)
    key = None
    if args.demo:
        from sessiongraph.ingest.demo import load_demo

        key = _run(lambda engine: load_demo(engine, only_if_empty=True), args.url)
        os.environ[DEMO_KEY] = key
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("--demo on %s: whoever opens GraphiQL there gets the demo's ADMIN key", args.host)
    os.environ["SESSIONGRAPH_DATABASE_URL"] = args.url  # for the worker processes
    metrics_port = int(os.environ.get(ENV["metrics_port"]) or 0)  # the flag's, or the environment's
    if metrics_port:
        from sessiongraph.observability.metrics import serve_metrics

        try:
            serve_metrics(args.metrics_host, metrics_port, args.workers)
        except OSError as e:
            print(f"error: metrics on {args.metrics_host}:{metrics_port}: {e.strerror}", file=sys.stderr)
            return 2
    address = f"http://{args.host}:{args.port}/graphql"
    lines = [f"GraphiQL: {address}" + ("  (the key below is already in its Headers tab)" if key else "")]
    if key:
        lines.append(f"API key: {key}")
    lines.append(database)
    if metrics_port:
        lines.append(f"metrics: http://{args.metrics_host}:{metrics_port}/metrics")
    for line in lines:
        if args.log_format == "json":
            log.info("%s", line)
        else:
            print(line, flush=True)
    # uvicorn re-raises the signal it shut down for once it is done, to the handler that was
    # there before it: this one makes a shutdown by SIGTERM exit with 0.
    signal.signal(signal.SIGTERM, _stopped)
    uvicorn.run(
        "sessiongraph.transport.server_factory:app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=logging_config,
        # A log line per request costs about 15% of the rate of `{ viewer { userId } }`:
        # off unless asked for.
        access_log=args.access_log,
        # X-Forwarded-For/-Proto are read only for the access log's client address: nothing
        # else uses them, and reading them cost about a tenth of a small query's time.
        proxy_headers=args.access_log,
        # Explicit, so a missing extra fails at start instead of silently serving slower.
        # httptools' protocol, writing each response in one piece (sessiongraph/protocol.py).
        loop="uvloop",
        http="sessiongraph.transport.protocol:OneWriteHttpToolsProtocol",
        env_file=None,
        # At SIGTERM: requests in flight get this long to finish, then are cancelled.
        timeout_graceful_shutdown=args.shutdown_grace,
    )
    return 0


def _stopped(signum, frame) -> None:
    import logging

    logging.getLogger("sessiongraph").info("stopped")
    raise SystemExit(0)


def cmd_import(args) -> int:
    if args.format == "asciicast":
        return _import_asciicast(args)
    from sessiongraph.ingest.importer import import_file

    stream = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    with stream:
        report = asyncio.run(import_file(args.url, stream))
    print(report.summary())
    if report.queued:
        print(f"{report.queued:,} events wait for the search index (found meanwhile, more slowly): a running server "
              "indexes them in the background, or run `sessiongraph index`")
    return 1 if report.rejected else 0


def cmd_index(args) -> int:
    from sessiongraph.migrations import upgrade
    from sessiongraph.models.indexer import index_all

    upgrade(args.url)
    print(f"indexed {_run(index_all, args.url):,} events; none left waiting")
    return 0


def _import_asciicast(args) -> int:
    from sessiongraph.ingest.asciicast import RecordingError, import_recording

    if args.org is None or args.user is None:
        print("error: --format asciicast needs --org and --user", file=sys.stderr)
        return 2
    try:
        report, session_id = asyncio.run(import_recording(args.url, args.file, args.org, args.user, args.title, args.resource))
    except (RecordingError, OSError) as e:
        print(f"error: {args.file}: {e}", file=sys.stderr)
        return 1
    print(report.summary())
    if report.rejected:
        return 1
    print(f"session: {session_id}")
    return 0


def cmd_export(args) -> int:
    from sessiongraph.downloads.export import export_command

    return export_command(args)


def cmd_apikey_create(args) -> int:
    from sessiongraph.gate.auth import KeyOrganisationConflict, create_key
    from sessiongraph.migrations import upgrade

    upgrade(args.url)
    try:
        key_id, key = _run(
            lambda engine: create_key(engine, args.org, args.user, args.role, args.machine, args.name), args.url
        )
    except KeyOrganisationConflict as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"key id: {key_id}")
    print(key)
    return 0


def cmd_apikey_revoke(args) -> int:
    from sessiongraph.gate.auth import revoke_key

    if not _run(lambda engine: revoke_key(engine, args.key_id), args.url):
        print(f"error: no live key {args.key_id}", file=sys.stderr)
        return 1
    print(f"revoked {args.key_id}")
    return 0


def cmd_demo(args) -> int:
    from sessiongraph.ingest.demo import load_demo
    from sessiongraph.migrations import upgrade

    upgrade(args.url)
    key = _run(lambda engine: load_demo(engine, only_if_empty=args.if_empty), args.url)
    print(f"API key: {key}")
    return 0


def cmd_export_schema(args) -> int:
    from sessiongraph.schema import schema

    print(schema.public_sdl())
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="sessiongraph", description=__doc__)
    root.add_argument("--database-url", dest="database_url", help="default: $SESSIONGRAPH_DATABASE_URL or ./sessiongraph.db")
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="bring the database schema to the newest version").set_defaults(run=cmd_migrate)

    serve = commands.add_parser("serve", help="migrate, then serve HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--access-log", action="store_true", help="log a line per request (off by default: it costs)")
    serve.add_argument("--log-format", choices=["text", "json"], default="text", help="json: one JSON object a line, with the request id")
    serve.add_argument("--shutdown-grace", type=float, default=30.0, metavar="SECONDS", help="at SIGTERM, how long requests in flight may still run (30)")
    serve.add_argument("--demo", action="store_true", help="load the demo data set into an empty database and put a new key for it in GraphiQL")
    serve.add_argument("--no-introspection", action="store_true", help="refuse introspection; also turns GraphiQL off")
    serve.add_argument("--no-graphiql", action="store_true", help="no GraphiQL page on GET /graphql")
    serve.add_argument("--no-planner", action="store_true", help="execute every query field by field (no planned execution)")
    serve.add_argument("--no-federation", action="store_true", help="no Apollo Federation subgraph fields (_service, _entities)")
    serve.add_argument("--trusted-documents-only", action="store_true", help="run only the trusted documents")
    serve.add_argument("--trusted-documents", dest="trusted_documents_dir", metavar="DIR", help="folder of trusted *.graphql documents")
    serve.add_argument("--max-depth", type=int, help="deepest document, introspection fields not counted (15)")
    serve.add_argument("--max-nodes", type=int, help="most estimated nodes, counted as GitHub does (50000)")
    serve.add_argument("--max-fields", type=int, help="most selected fields, aliases included (1000)")
    serve.add_argument("--max-document-bytes", type=int, help="largest document (100000)")
    serve.add_argument("--max-tokens", type=int, help="most tokens the parser reads of a document (15000)")
    serve.add_argument("--max-body-bytes", type=int, help="largest request body (1000000)")
    serve.add_argument("--request-timeout", type=float, metavar="SECONDS", help="longest a request may run (30)")
    serve.add_argument(
        "--api-key-cache-seconds", type=float, metavar="SECONDS",
        help="how long a live API key is trusted before it is looked up again; a revocation from another process takes up to this long (5; 0: every request)",
    )
    serve.add_argument("--db-pool-size", type=int, help="database connections kept open (20)")
    serve.add_argument("--apq-cache-bytes", type=int, help="memory for documents registered by APQ (10000000)")
    serve.add_argument("--metrics-port", type=int, metavar="PORT", help="serve Prometheus metrics on this port, apart from the API (off)")
    serve.add_argument("--metrics-host", default="127.0.0.1", help="address the metrics listener binds (127.0.0.1)")
    serve.set_defaults(run=cmd_serve)

    imp = commands.add_parser("import", help="load sessions from JSON Lines")
    imp.add_argument("file", help="a file, or - for standard input")
    imp.add_argument("--format", choices=["jsonl", "asciicast"], default="jsonl", help="asciicast: an asciinema recording (v2 or v3) as a TERMINAL session")
    imp.add_argument("--org", type=uuid.UUID, help="asciicast: the session's organisation")
    imp.add_argument("--user", type=uuid.UUID, help="asciicast: the session's owner")
    imp.add_argument("--title", help="asciicast: the title (default: the recording's)")
    imp.add_argument("--resource", default="asciinema", help="asciicast: the resource's name (asciinema)")
    imp.set_defaults(run=cmd_import)

    commands.add_parser(
        "index", help="bring the search index up to date now (a running server does it in the background)"
    ).set_defaults(run=cmd_index)

    exp = commands.add_parser("export", help="write a session as a file: the bytes of its download link")
    exp.add_argument("session_id", type=uuid.UUID, metavar="SESSION_ID")
    exp.add_argument("--format", required=True, choices=["csv", "json", "jsonl", "text", "asciicast"])
    exp.add_argument("--output", help="a file (default: standard output)")
    exp.add_argument("--event-types", help="only these event types, comma-separated (e.g. OUTPUT,ERROR)")
    exp.add_argument("--event-time", action="store_true", help="text: each event's seconds from the start before it")
    exp.add_argument("--newline", action="store_true", help="text: a newline after each event")
    exp.set_defaults(run=cmd_export)

    apikey = commands.add_parser("apikey", help="create or revoke API keys").add_subparsers(dest="action", required=True)
    create = apikey.add_parser("create")
    create.add_argument("--org", type=uuid.UUID, required=True)
    create.add_argument("--user", type=uuid.UUID, required=True)
    create.add_argument("--role", choices=["user", "admin"], default="user")
    create.add_argument("--machine", action="store_true")
    create.add_argument("--name")
    create.set_defaults(run=cmd_apikey_create)
    revoke = apikey.add_parser("revoke")
    revoke.add_argument("key_id", type=uuid.UUID)
    revoke.set_defaults(run=cmd_apikey_revoke)

    demo = commands.add_parser("demo", help="load a demo data set and print an API key for it")
    demo.add_argument("--if-empty", action="store_true", help="load the data set only into an empty database")
    demo.set_defaults(run=cmd_demo)
    commands.add_parser("export-schema", help="print the schema as SDL").set_defaults(run=cmd_export_schema)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.url = database_url(args.database_url)
    return args.run(args)

