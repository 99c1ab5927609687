"""`python -m sessiongraph.faults` (`make faults`, FAULTS_ARGS): the fault scenarios on the
databases asked for; prints a Markdown report and exits 1 when anything acknowledged was lost
or doubled, a seq is missing, a request ran past its timeout or an error had no code."""

import argparse
import asyncio
import contextlib
import random
import sys
import time

from sessiongraph.faults import postgres, suite

SCENARIOS = ("server-kill", "import-kill", "postgres", "sqlite-processes")


def arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sessiongraph.faults", description=__doc__)
    parser.add_argument("--databases", default="sqlite,postgresql", help="sqlite,postgresql")
    parser.add_argument("--postgres-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
                        help="a server where the kill scenarios create (and drop) a database of their own")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=",".join(SCENARIOS))
    parser.add_argument("--trials", type=int, default=5, help="faults per scenario and database (5)")
    parser.add_argument("--writers", type=int, default=4, help="concurrent appenders (4)")
    parser.add_argument("--batches", type=int, default=50, help="appendEvents calls per appender and trial (50)")
    parser.add_argument("--batch", type=int, default=20, help="events per call (20)")
    parser.add_argument("--import-sessions", type=int, default=4000, help="sessions in each imported file (4000: an import outlasts its kill, 0.5-3 s in)")
    parser.add_argument("--request-timeout", type=float, default=3.0, help="the server's --request-timeout (3)")
    parser.add_argument("--freeze-seconds", type=float, default=8.0, help="how long the private PostgreSQL is stopped (8)")
    parser.add_argument("--api-key-cache-seconds", type=float, default=0.0,
                        help="the server's --api-key-cache-seconds (0: every request looks its key up, meeting the fault)")
    parser.add_argument("--subject-python", help="run `sessiongraph serve` and `import` with this interpreter (another install, to compare builds); default: this one")
    parser.add_argument("--seed", type=int, help="for the random moments")
    parser.add_argument("--out", help="also write the report to this file")
    return parser.parse_args(argv)


async def main(args) -> int:
    databases = [d for d in args.databases.split(",") if d]
    scenarios = [s for s in args.scenarios.split(",") if s]
    seed = args.seed if args.seed is not None else int(time.time())
    random.seed(seed)
    suite.Server.key_cache_seconds = args.api_key_cache_seconds
    if args.subject_python:
        suite.SUBJECT_PYTHON = args.subject_python
    tallies: list[suite.Tally] = []
    skipped: list[str] = []
    with suite.scratch() as folder:
        for database in databases:
            for scenario in scenarios:
                started = time.monotonic()
                if scenario == "postgres" and database != "postgresql" or scenario == "sqlite-processes" and database != "sqlite":
                    continue
                print(f"-- {scenario} on {database}", file=sys.stderr, flush=True)
                if scenario in ("server-kill", "import-kill"):
                    async with _database(database, args, folder) as url:
                        if scenario == "server-kill":
                            tally = await suite.server_kill(url, args.trials, args.writers, args.batches, args.batch, args.request_timeout, folder)
                        else:
                            tally = await suite.import_kill(url, args.trials, args.import_sessions, folder)
                    found = [tally]
                elif scenario == "postgres" and database == "postgresql":
                    if (reason := postgres.missing()) is not None:
                        skipped.append(f"private PostgreSQL: {reason}")
                        continue
                    found = await suite.postgres_faults(
                        args.trials, args.writers, args.batches, args.batch, args.request_timeout, args.freeze_seconds, folder
                    )
                elif scenario == "sqlite-processes" and database == "sqlite":
                    found = [await suite.sqlite_processes(
                        suite.sqlite_url(folder), args.writers, args.batches, args.batch, args.request_timeout, 2, args.import_sessions, folder
                    )]
                else:
                    continue
                for tally in found:
                    tally.name = f"{tally.name} ({database}, {args.trials if scenario != 'sqlite-processes' else 1} trials, {time.monotonic() - started:.0f} s)"
                tallies += found
    header = (
        f"### Fault suite (seed {seed}; {args.writers} appenders x {args.batches} calls x {args.batch} events a trial; "
        f"request timeout {args.request_timeout:g} s; API key cache {args.api_key_cache_seconds:g} s; PostgreSQL frozen {args.freeze_seconds:g} s)"
    )
    text = suite.report(tallies, header)
    if skipped:
        text += "\n\nSkipped: " + "; ".join(skipped)
    print(text)
    if args.out:
        with open(args.out, "w") as out:
            out.write(text + "\n")
    return 0 if all(t.ok for t in tallies) else 1


def _database(database: str, args, folder):
    """A fresh database for one scenario: a new SQLite file, or a new PostgreSQL database."""
    if database == "sqlite":
        return _given(suite.sqlite_url(folder))
    return suite.postgres_database(args.postgres_url)


@contextlib.asynccontextmanager
async def _given(url: str):
    yield url


if __name__ == "__main__":
    sys.exit(asyncio.run(main(arguments())))
