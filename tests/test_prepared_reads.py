"""Every statement the server sends goes through SQLAlchemy's execution: whoever watches the
engine (logging, tracing, the tests' counters) sees each one begin with
`before_cursor_execute` and end with `after_cursor_execute`, on a real cursor, for the reads
of a nested page and for the writes of an import alike."""

import contextlib
from pathlib import Path

from sqlalchemy import event

from tests.conftest import event_, ok, store, turn_
from tests.test_import import import_bytes, line, new_session, turn, varied_events

NESTED_PAGE = (Path(__file__).parents[1] / "bench" / "queries" / "NestedPage.graphql").read_text()


@contextlib.contextmanager
def cursor_events(engine):
    """The engine's cursor events inside the block: (which, cursor, statement) each."""
    seen: list[tuple] = []

    def before(connection, cursor, statement, parameters, context, executemany):
        seen.append(("before", cursor, statement))

    def after(connection, cursor, statement, parameters, context, executemany):
        seen.append(("after", cursor, statement))

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    event.listen(engine.sync_engine, "after_cursor_execute", after)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", before)
        event.remove(engine.sync_engine, "after_cursor_execute", after)


def assert_paired(seen: list[tuple]) -> None:
    """Each statement's before is followed by its after, on the same cursor."""
    assert seen and len(seen) % 2 == 0, seen
    for (first, cursor, statement), (second, other_cursor, other_statement) in zip(seen[::2], seen[1::2]):
        assert (first, second) == ("before", "after"), seen
        assert cursor is not None and cursor is other_cursor and statement == other_statement


async def test_every_statement_of_a_nested_page_fires_both_cursor_events(engine, org):
    for n in range(3):
        turns = [turn_(f"t{k}", n * 10 + k, events=[event_("LLM_OUTPUT", n * 10 + k + 0.5, "out", agent="a")]) for k in range(3)]
        await store(engine, org.alice, minutes=n * 10, turns=turns, events=[event_("INPUT", n * 10 + 0.1, "hi")])
    with cursor_events(engine) as seen:
        data = await ok(engine, org.alice, NESTED_PAGE)
    assert [len(s["turns"]["nodes"]) for s in data["sessions"]["nodes"]] == [3, 3, 3]
    assert_paired(seen)
    # sessions, turns, events: one statement a level
    assert [statement.split()[0] for _, _, statement in seen[::2]] == ["SELECT"] * 3


async def test_every_statement_of_an_import_fires_both_cursor_events(engine):
    lines = [
        new_session(events=varied_events(30), turns=[turn(f"t{n}", n, *varied_events(20, n, f"t{n}-")) for n in range(3)])
        for _ in range(3)
    ]
    with cursor_events(engine) as seen:
        report, errors = await import_bytes(engine, *map(line, lines))
        again, _ = await import_bytes(engine, line(lines[0]))  # a stored session: the line-by-line writer
    assert (report.sessions_created, report.events, errors) == (3, 3 * 90, "")
    assert again.lines == 1 and again.rejected == 0
    assert_paired(seen)
    assert any(statement.startswith("INSERT INTO events") for _, _, statement in seen)
