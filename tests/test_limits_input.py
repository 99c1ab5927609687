"""The input limits a user meets, the same on SQLite and PostgreSQL (issue 21, defects 3 and 4
and NUL of defect 5): JSON nested at most 64 deep, no U+0000 in stored text, a session's
tokens at most 2^31-1; each refused by the mutations and the importer alike with one message,
changing nothing. What was stored before these rules (deeper JSON) never breaks a read, and
one bad line never ends an import."""

import json

import pytest
from sqlalchemy import select

from sessiongraph.ingest import importer
from sessiongraph.models import Event, Session, Turn
from sessiongraph.models.recording import NewSession, store_session
from sessiongraph.resolvers.rules import MAX_JSON_DEPTH, MAX_TOKENS, TOKENS_OVER
from tests.conftest import api_key, event_, execute, ok, store
from tests.test_import import cli, counts, event, import_bytes, line, new_session, turn, url_of
from tests.test_recording import APPEND, COMPLETE, CREATE, START, append, complete, create, start, stored_count
from tests.test_rules import mutation_message
from tests.test_subscriptions import Client, serving


def nested(depth: int, leaf=1):
    """A JSON value `depth` levels deep: objects and arrays in turn, `leaf` inside."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


DEEP = nested(MAX_JSON_DEPTH + 1)
NUL_TEXT = "a\x00b"

# (id, mutation, its input, the value's place in the mutation's input, the import line, the
# value's place in the line): as tests/test_rules.py's table.
CASES = [
    ("payload-65-deep", APPEND, {"type": "OUTPUT", "payload": DEEP}, "events[0]",
     new_session(events=[event("OUTPUT", "x", payload=DEEP)]), "session.events[0]: `payload`"),
    ("metadata-65-deep", CREATE, {"metadata": {"a": DEEP}}, None, new_session(metadata={"a": DEEP}), "session: `metadata`"),
    ("nul-in-payload-string", APPEND, {"type": "OUTPUT", "payload": {"k": [NUL_TEXT]}}, "events[0]",
     new_session(events=[event("OUTPUT", "x", payload={"k": [NUL_TEXT]})]), "session.events[0]: `payload`"),
    ("nul-in-payload-key", APPEND, {"type": "OUTPUT", "payload": {NUL_TEXT: 1}}, "events[0]",
     new_session(turns=[turn("t", 1, event("OUTPUT", "x", payload={NUL_TEXT: 1}))]), "turns[0].events[0]: `payload`"),
    ("nul-in-metadata-string", CREATE, {"metadata": {"team": NUL_TEXT}}, None,
     new_session(metadata={"team": NUL_TEXT}), "session: `metadata`"),
    ("nul-in-user-query", START, {"taskId": "t", "userQuery": NUL_TEXT}, None,
     new_session(turns=[turn("t", 1, user_query=NUL_TEXT)]), "turns[0]: `user_query`"),
    ("nul-in-result", COMPLETE, {"status": "COMPLETED", "result": NUL_TEXT}, None,
     new_session(turns=[turn("t", 1, result=NUL_TEXT)]), "turns[0]: `result`"),
    ("nul-in-message", APPEND, {"type": "OUTPUT", "message": NUL_TEXT}, "events[0]",
     new_session(events=[event("OUTPUT", NUL_TEXT)]), "session.events[0]: `message`"),
    ("nul-in-terminal-input", CREATE,
     {"kind": "TERMINAL", "terminal": {"verb": "EXEC", "resource": {"name": "a", "type": "b"}, "input": NUL_TEXT}},
     "terminal", new_session(kind="TERMINAL", terminal={"verb": "EXEC", "resource": {"name": "a", "type": "b"},
                                                        "input": NUL_TEXT}), "session: `terminal`"),
]


@pytest.mark.parametrize(("mutation", "given", "mutation_where", "imported", "import_where"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
async def test_deep_json_and_nul_are_refused_by_the_mutation_and_the_importer_with_one_message(
    engine, org, mutation, given, mutation_where, imported, import_where
):
    message = await mutation_message(engine, org, mutation, given)
    rule = message if mutation_where is None else message.removeprefix(f"{mutation_where}: ")
    assert ("U+0000" in rule) != ("deeper than 64 levels" in rule), rule
    before = [await stored_count(engine, table) for table in (Session, Turn, Event)]

    report, errors = await import_bytes(engine, line(imported))

    assert report.rejected == 1 and report.sessions_created == 0
    # The importer checks a whole JSON value where the mutation checks a field of it: the
    # rule's words after the value's name are the same.
    assert errors.startswith(f"line 1: rejected: {import_where}: The "), errors
    said = "holds the character U+0000 (NUL)" if "U+0000" in rule else rule[rule.index("nests"):]
    assert said in rule and said in errors, (rule, errors)
    assert [await stored_count(engine, table) for table in (Session, Turn, Event)] == before


async def test_json_64_deep_is_stored_and_read_back_whole(engine, org):
    session = await create(engine, org.alice, metadata={"a": nested(MAX_JSON_DEPTH - 1)})
    [stored] = await append(engine, org.alice, session["id"], [{"type": "OUTPUT", "payload": nested(MAX_JSON_DEPTH)}])
    assert stored["payload"] == nested(MAX_JSON_DEPTH)
    data = await ok(engine, org.alice, '{ sessions { nodes { metadata events { nodes { payload } } } } }')
    assert data["sessions"]["nodes"] == [{"metadata": {"a": nested(MAX_JSON_DEPTH - 1)},
                                          "events": {"nodes": [{"payload": nested(MAX_JSON_DEPTH)}]}}]


@pytest.mark.parametrize("depth", [254, 600])
async def test_json_stored_deeper_before_the_rule_never_breaks_a_read(engine, org, client, depth):
    """Values stored before the depth rule (appendEvents took 254 levels, the import 600):
    every page that holds them answers 200 with the value as stored, on both databases."""
    await store(engine, org.alice, metadata={"m": nested(depth - 1)}, events=[event_("OUTPUT", 1, "x", payload=nested(depth))])
    headers = {"X-API-Key": await api_key(engine, org.alice)}
    for query in (
        "{ sessions { nodes { metadata events { nodes { seq payload } } } } }",
        "{ sessions { nodes { turns { nodes { turn } } events(first: 1) { totalCount nodes { payload } } } } }",
    ):
        response = await client.post("/graphql", json={"query": query}, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body["errors"]
        [node] = body["data"]["sessions"]["nodes"]
        assert node["events"]["nodes"][0]["payload"] == nested(depth)
        if "metadata" in node:
            assert node["metadata"] == {"m": nested(depth - 1)}


async def test_the_session_tokens_never_pass_int_and_both_databases_agree(engine, org):
    session = await create(engine, org.alice)
    first = await start(engine, org.alice, session["id"], "t1")
    second = await start(engine, org.alice, session["id"], "t2")
    await complete(engine, org.alice, first["id"], status="COMPLETED", tokensUsed=MAX_TOKENS)

    result = await execute(engine, org.alice, COMPLETE, {"input": {"turnId": second["id"], "status": "COMPLETED", "tokensUsed": 1}})

    [error] = result.errors
    assert (error.extensions["code"], error.message) == ("BAD_USER_INPUT", TOKENS_OVER)
    # Nothing changed: the turn still runs, the session's sum is the largest Int and readable,
    # and the order by tokens pages on with the server's own cursor.
    await complete(engine, org.alice, second["id"], status="COMPLETED", tokensUsed=0)
    await create(engine, org.alice)
    query = """query($after: String) { sessions(first: 1, after: $after, orderBy: {field: TOKENS_USED, direction: DESC}) {
      nodes { tokensUsed turns { nodes { status tokensUsed } } } pageInfo { endCursor } } }"""
    page = (await ok(engine, org.alice, query))["sessions"]
    assert page["nodes"] == [{"tokensUsed": MAX_TOKENS, "turns": {"nodes": [
        {"status": "COMPLETED", "tokensUsed": MAX_TOKENS}, {"status": "COMPLETED", "tokensUsed": 0}]}}]
    following = (await ok(engine, org.alice, query, {"after": page["pageInfo"]["endCursor"]}))["sessions"]
    assert [n["tokensUsed"] for n in following["nodes"]] == [0]


async def test_the_importer_holds_the_session_tokens_to_int_new_session_or_stored(engine, org):
    big = new_session(turns=[turn("t1", 1, tokens_used=MAX_TOKENS), turn("t2", 2, tokens_used=1)])
    fits = new_session(turns=[turn("t1", 1, tokens_used=MAX_TOKENS)])
    report, errors = await import_bytes(engine, line(big), line(fits))
    assert (report.rejected, report.sessions_created) == (1, 1)
    assert errors == f"line 1: rejected: session: `turns`: {TOKENS_OVER}\n"

    # A turn more for the stored session: its sum would pass Int.
    report, errors = await import_bytes(engine, line({**fits, "turns": [turn("t2", 2, tokens_used=1)]}))
    assert (report.rejected, report.turns) == (1, 0)
    assert errors == f"line 1: rejected: session: `turns`: {TOKENS_OVER}\n"
    assert (await counts(engine))[1:3] == (1, 1)


async def test_a_line_nested_too_deep_is_rejected_and_the_import_goes_on(engine):
    """Defect 4: metadata 300 deep ended the import with a traceback, nothing stored."""
    lines = [
        line(new_session()),
        json.dumps(new_session(metadata={"m": nested(300)})).encode(),  # deeper than orjson writes
        json.dumps(new_session(events=[event("OUTPUT", "x", payload=nested(600))])).encode(),
        line(new_session()),
    ]
    done = cli(url_of(engine), "import", "-", stdin=b"\n".join(lines) + b"\n")
    assert done.returncode != 0
    stderr = done.stderr.decode()
    assert "Traceback" not in stderr, stderr
    assert f"line 2: rejected: session: `metadata`: The metadata nests objects and arrays deeper than {MAX_JSON_DEPTH} levels." in stderr
    assert "line 3: rejected: session.events[0]: `payload`: The payload nests objects and arrays deeper than" in stderr
    assert b"stored 2 new sessions" in done.stdout and b"2 of 4 lines rejected" in done.stdout
    assert (await counts(engine))[1] == 2


async def test_any_failure_reading_or_storing_one_line_costs_that_line_only(engine, monkeypatch):
    """Whatever goes wrong with one line (here: made to fail on purpose, once while it is read
    and once while it is stored) is reported with its number; the other lines are stored."""
    parse, store_one = importer.parse_session, importer._Importer.store_line

    def failing_parse(raw: bytes):
        if b"read-me-not" in raw:
            raise RecursionError("maximum recursion depth exceeded")
        return parse(raw)

    async def failing_store(self, number, new: NewSession):
        if new.title == "store-me-not":
            async def broken(connection, new):
                raise RuntimeError("disk on fire\nsecond line")
            monkeypatch.setattr("sessiongraph.models.recording.store_session", broken)
            try:
                return await store_one(self, number, new)
            finally:
                monkeypatch.setattr("sessiongraph.models.recording.store_session", store_session)
        return await store_one(self, number, new)

    monkeypatch.setattr(importer, "parse_session", failing_parse)
    monkeypatch.setattr(importer._Importer, "store_line", failing_store)
    monkeypatch.setattr("sessiongraph.models.recording.store_new_sessions", _refuse_batches)
    report, errors = await import_bytes(
        engine, line(new_session()), line(new_session(title="read-me-not")), line(new_session(title="store-me-not")),
        line(new_session()),
    )
    assert errors.splitlines() == [
        "line 2: rejected: could not be read (RecursionError: maximum recursion depth exceeded)",
        "line 3: rejected: could not be stored (RuntimeError: disk on fire)",
    ]
    assert (report.lines, report.rejected, report.sessions_created) == (4, 2, 2)
    assert (await counts(engine))[1] == 2


async def _refuse_batches(connection, news):
    raise ValueError("a batch the writer cannot take")


async def test_a_title_with_nul_is_cleaned_by_the_mutation(engine, org):
    """A title loses its control characters (the contract's title rule), NUL among them: on
    both databases the same title is stored."""
    session = await create(engine, org.alice, title="Trip\x00 planning")
    assert session["title"] == "Trip planning"


async def test_raw_bytes_with_nul_still_come_as_base64(engine, org):
    """The NUL rule is for text: a base64 message carries any bytes, on both databases."""
    session = await create(engine, org.alice)
    [stored] = await append(engine, org.alice, session["id"], [{"type": "OUTPUT", "messageBase64": "AAEC"}])
    assert stored["base64"] == "AAEC"
    async with engine.connect() as connection:
        assert await connection.scalar(select(Event.content)) == b"\x00\x01\x02"


async def test_json_stored_deeper_before_the_rule_reads_over_the_websocket_too(engine, org):
    """The same over graphql-transport-ws: a query and a subscription replaying the event."""
    session_id = await store(engine, org.alice, events=[event_("OUTPUT", 1, "x", payload=nested(300))])
    key = await api_key(engine, org.alice)
    async with serving(engine) as url, Client.connected(url, {"apiKey": key}) as client:
        await client.subscribe("q", "query($id: ID!) { session(id: $id) { events { nodes { payload } } } }", {"id": str(session_id)})
        message = await client.receive()
        assert message["type"] == "next", message
        assert message["payload"]["data"]["session"]["events"]["nodes"] == [{"payload": nested(300)}]
        assert await client.receive() == {"id": "q", "type": "complete"}
        await client.subscribe(
            "s", "subscription($id: ID!) { sessionEvents(sessionId: $id, afterSeq: 0) { seq payload } }", {"id": str(session_id)}
        )
        message = await client.receive()
        assert message["type"] == "next", message
        assert message["payload"]["data"]["sessionEvents"] == {"seq": 1, "payload": nested(300)}
