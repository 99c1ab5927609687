"""Full-text search (the contract's search.graphql): searchEvents and SessionFilter.text find
substrings case-insensitively by Unicode case folding, in any script, with the same answers
on SQLite (FTS5 trigram) and PostgreSQL (pg_trgm); only what the caller may see; never a
deleted session's; pages newest first; every bad query BAD_USER_INPUT naming its rule; and
the index kept in step by every writer."""

import asyncio
import random
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from sessiongraph.migrations import upgrade_async
from sessiongraph.models import Event, Session, create_engine
from sessiongraph.models.indexer import index_all
from sessiongraph.models.recording import write_transaction
from sessiongraph.models.search import index_pending, queued
from sessiongraph.models.search_text import fold
from sessiongraph.resolvers.rules import search_terms
from sessiongraph.resolvers.context import Viewer
from tests.conftest import BACKENDS, T0, count_statements, error_codes, event_, execute, fresh_database, make_org, ok, store, store_terminal, turn_

pytestmark = pytest.mark.usefixtures("both_executions")

SEARCH = """query($q: String!, $first: Int, $after: String, $filter: SessionFilter, $types: [String!]) {
  searchEvents(query: $q, first: $first, after: $after, filter: $filter, types: $types) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { cursor snippet matches { start length } node { seq type message session { title } } } } }"""
SESSIONS = """query($text: String!) { sessions(filter: {text: $text}) { totalCount nodes { title } } }"""


async def found(engine, viewer, query: str, **variables) -> list[str]:
    """The messages searchEvents finds for `query`, in its order (every page)."""
    messages, after = [], None
    while True:
        data = (await ok(engine, viewer, SEARCH, {"q": query, "after": after, "first": 100, **variables}))["searchEvents"]
        messages += [e["node"]["message"] for e in data["edges"]]
        if not data["pageInfo"]["hasNextPage"]:
            return messages
        after = data["pageInfo"]["endCursor"]


# What each hard case of case folding finds: (stored text, query, found?). The same on both
# databases: both compare the texts models/search.fold makes.
FOLDING = [
    ("Die STRASSE ist lang", "straße", True),  # full case folding: ß is ss
    ("die straße", "STRASSE", True),
    ("Strasse", "STRAẞE", True),  # capital sharp s folds to ss too
    ("İSTANBUL'da", "istanbul", True),  # dotted capital I folds to i (+ U+0307, dropped)
    ("istanbul", "İSTANBUL", True),
    ("ISTANBUL", "istanbul", True),  # plain I is i: no Turkish tailoring
    ("ısparta", "isparta", False),  # dotless ı stays its own letter
    ("ISPARTA", "ısparta", False),
    ("ΟΔΟΣ ΑΘΗΝΑΣ", "οδος", True),  # final sigma ς and σ fold alike
    ("η οδός", "ΟΔΌΣ", True),
    ("η οδός", "οδος", False),  # accents are kept
    ("连接数据库失败", "数据库", True),  # CJK: any three code points
    ("deploy 🚀🚀 done", '"y 🚀🚀"', True),  # emoji are code points like any other
    ("deploy 🚀🚀 done", "🚀🚀🚀", False),
    ("cafe\u0301 au lait", '"CAFÉ AU"', True),  # NFD stored, NFC searched: canonically equal
    ("café au lait", "cafe\u0301", True),  # and the other way round
    ("café au lait", '"cafe au"', False),  # no accent folding: é is not e
    ("Ｆｕｌｌｗｉｄｔｈ", "ｆｕｌｌ", True),  # fullwidth folds to fullwidth (no NFKC)
    ("Ｆｕｌｌｗｉｄｔｈ", "full", False),
    ("100% of a_b", '"0% of a_"', True),  # LIKE's and GLOB's wildcards are plain characters
    ("a*b?c[d]", "*b?c[", True),
    ("abcXbcd", "b%d", False),
    # Quotes and backslashes are plain characters too (PostgreSQL's statement holds the terms
    # written as literals: see models/search.py).
    ("O'Brien said", "o'brien", True),
    ("path C:\\dir\\x", "c:\\dir", True),
    ("'; DROP TABLE events; --", '"\'; drop"', True),
    ("it is", "'is'", False),
]


@pytest.mark.parametrize(("stored", "query", "expected"), FOLDING, ids=repr)
async def test_case_folding_decisions_are_the_same_on_every_database(engine, org, stored, query, expected):
    await store(engine, org.alice, events=[event_("LLM_OUTPUT", 1, stored), event_("LLM_OUTPUT", 2, "unrelated")])
    assert await found(engine, org.alice, query) == ([stored] if expected else [])
    titles = (await ok(engine, org.alice, SESSIONS, {"text": query}))["sessions"]
    assert titles["totalCount"] == (1 if expected else 0)


async def test_binary_content_is_searched_as_its_text_with_invalid_bytes_replaced(engine, org):
    await store(engine, org.alice, events=[event_("OUTPUT", 1, b"\xff\xfeERROR: disk \xc3\x28full")])
    data = (await ok(engine, org.alice, SEARCH, {"q": "error: disk"}))["searchEvents"]
    [edge] = data["edges"]
    assert edge["node"]["message"] == "\ufffd\ufffdERROR: disk \ufffd(full"
    assert edge["snippet"] == edge["node"]["message"]
    assert edge["matches"] == [{"start": 2, "length": 6}, {"start": 9, "length": 4}]
    assert await found(engine, org.alice, "\ufffd(full") == [edge["node"]["message"]]


async def test_snippet_is_200_characters_around_the_first_match_with_every_match_in_order(engine, org):
    message = "x" * 500 + " Lisbon trip, LISBON again; lisbon " + "y" * 500
    await store(engine, org.alice, events=[event_("LLM_OUTPUT", 1, message)])
    [edge] = (await ok(engine, org.alice, SEARCH, {"q": "lisbon trip"}))["searchEvents"]["edges"]
    snippet = edge["snippet"]
    assert len(snippet) == 200 and snippet in message and "Lisbon trip, LISBON again; lisbon" in snippet
    spans = [snippet[m["start"]:m["start"] + m["length"]] for m in edge["matches"]]
    assert spans == ["Lisbon", "trip", "LISBON", "lisbon"]
    assert [m["start"] for m in edge["matches"]] == sorted(m["start"] for m in edge["matches"])


async def test_matches_count_code_points_of_the_text_as_stored(engine, org):
    # "ß" folds to two letters and "e" + U+0301 recomposes to one: the offsets are the snippet's.
    await store(engine, org.alice, events=[event_("LLM_OUTPUT", 1, "🚀 Große Straße, cafe\u0301!")])
    [edge] = (await ok(engine, org.alice, SEARCH, {"q": "STRASSE CAFÉ"}))["searchEvents"]["edges"]
    snippet = edge["snippet"]
    assert [snippet[m["start"]:m["start"] + m["length"]] for m in edge["matches"]] == ["Straße", "cafe\u0301"]


async def test_every_term_must_occur_and_quoted_terms_hold_spaces(engine, org):
    await store(engine, org.alice, events=[
        event_("LLM_OUTPUT", 1, "trip to Lisbon in May"),
        event_("LLM_OUTPUT", 2, "Lisbon trip"),
        event_("LLM_OUTPUT", 3, "a trip to Porto"),
    ])
    assert await found(engine, org.alice, "trip lisbon") == ["Lisbon trip", "trip to Lisbon in May"]
    assert await found(engine, org.alice, '"trip to" lisbon') == ["trip to Lisbon in May"]
    assert await found(engine, org.alice, '"to lisbon in may"') == ["trip to Lisbon in May"]


async def test_only_what_the_caller_may_see_is_found(engine, org, other_org):
    await store(engine, org.alice, title="alice", events=[event_("LLM_OUTPUT", 1, "secret plan A")])
    await store(engine, org.bob, title="bob", events=[event_("LLM_OUTPUT", 2, "secret plan B")])
    await store(engine, other_org.alice, title="other", events=[event_("LLM_OUTPUT", 3, "secret plan C")])
    assert await found(engine, org.alice, "secret") == ["secret plan A"]
    assert await found(engine, org.bob, "secret") == ["secret plan B"]
    assert await found(engine, org.admin, "secret") == ["secret plan B", "secret plan A"]
    assert await found(engine, other_org.admin, "secret") == ["secret plan C"]
    titles = (await ok(engine, org.admin, SESSIONS, {"text": "secret"}))["sessions"]["nodes"]
    assert sorted(t["title"] for t in titles) == ["alice", "bob"]


async def test_a_deleted_session_is_never_found(engine, org):
    kept = await store(engine, org.alice, title="kept plan", events=[event_("LLM_OUTPUT", 1, "the plan, kept")])
    gone = await store(engine, org.alice, title="gone plan", minutes=1, events=[event_("LLM_OUTPUT", 2, "the plan, gone")])
    await ok(engine, org.alice, 'mutation($id: ID!) { deleteSession(input: {id: $id}) { clientMutationId } }', {"id": str(gone)})
    assert await found(engine, org.alice, "plan") == ["the plan, kept"]
    data = (await ok(engine, org.alice, SEARCH, {"q": "plan"}))["searchEvents"]
    assert data["totalCount"] == 1
    sessions = (await ok(engine, org.alice, SESSIONS, {"text": "plan"}))["sessions"]
    assert sessions == {"totalCount": 1, "nodes": [{"title": "kept plan"}]}
    assert str(kept) != str(gone)


async def test_pages_go_newest_first_by_timestamp_then_seq_with_keyset_cursors(engine, org):
    # Two sessions; events at the same timestamps in both, so the seq (then the id) decides.
    for minutes in (0, 1):
        await store(engine, org.alice, minutes, events=[
            event_("LLM_OUTPUT", k // 3, f"match {minutes}-{k}") for k in range(12)
        ] + [event_("LLM_OUTPUT", 0, "no hit here")])
    async with engine.connect() as connection:
        rows = (await connection.execute(select(Event.content, Event.timestamp, Event.seq, Event.id))).all()
    rows = [r for r in rows if r.content.startswith(b"match")]
    expected = [r.content.decode() for r in sorted(rows, key=lambda r: (r.timestamp, r.seq, r.id), reverse=True)]
    pages, after = [], None
    while True:
        data = (await ok(engine, org.alice, SEARCH, {"q": "match", "first": 5, "after": after}))["searchEvents"]
        assert data["totalCount"] == 24
        pages.append([e["node"]["message"] for e in data["edges"]])
        if not data["pageInfo"]["hasNextPage"]:
            break
        after = data["pageInfo"]["endCursor"]
    assert [len(p) for p in pages] == [5, 5, 5, 5, 4]
    assert [m for p in pages for m in p] == expected
    assert (await ok(engine, org.alice, SEARCH, {"q": "match", "first": 0}))["searchEvents"]["edges"] == []


async def test_types_and_filter_narrow_the_search(engine, org):
    await store_terminal(engine, org.alice, title="one", events=[
        event_("INPUT", 1, "select * from orders"),
        event_("OUTPUT", 2, "3 orders found"),
        event_("LLM_PARTIAL", 3, "orders partial"),
    ])
    await store(engine, org.bob, title="two", events=[event_("LLM_OUTPUT", 4, "your orders")])
    assert await found(engine, org.admin, "orders") == ["your orders", "3 orders found", "select * from orders"]
    assert await found(engine, org.admin, "orders", types=["INPUT"]) == ["select * from orders"]
    assert await found(engine, org.admin, "orders", types=["LLM_PARTIAL"]) == ["orders partial"]
    assert await found(engine, org.admin, "orders", types=[]) == []
    assert await found(engine, org.admin, "orders", filter={"kinds": ["TERMINAL"]}) == ["3 orders found", "select * from orders"]
    assert await found(engine, org.admin, "orders", filter={"userId": str(org.bob.user_id)}) == ["your orders"]
    assert await found(engine, org.admin, "orders", filter={"text": "your orders"}) == ["your orders"]


async def test_session_text_filter_reads_titles_user_queries_results_and_events(engine, org):
    await store(engine, org.alice, 0, title="Trip to Lisbon")
    await store(engine, org.alice, 1, title="q", turns=[turn_("t", 1, user_query="What about PORTO?")])
    await store(engine, org.alice, 2, title="r", turns=[turn_("t", 2, result="Go to Faro.")])
    await store(engine, org.alice, 3, title="e", events=[event_("LLM_OUTPUT", 3, "Évora is lovely")])

    async def titles(text_: str) -> list[str]:
        return [n["title"] for n in (await ok(engine, org.alice, SESSIONS, {"text": text_}))["sessions"]["nodes"]]

    assert await titles("LISBON") == ["Trip to Lisbon"]
    assert await titles("porto") == ["q"]
    assert await titles("faro") == ["r"]
    assert await titles("ÉVORA") == ["e"]
    assert await titles("trip porto") == []  # all the terms in one text


async def test_renaming_and_updating_a_title_keeps_the_search_in_step(engine, org):
    session_id = await store(engine, org.alice, title="Old name")
    rename = 'mutation($id: ID!, $t: String!) { renameSession(input: {id: $id, title: $t}) { session { title } } }'
    await ok(engine, org.alice, rename, {"id": str(session_id), "t": "Große Reise"})
    assert (await ok(engine, org.alice, SESSIONS, {"text": "old name"}))["sessions"]["totalCount"] == 0
    assert (await ok(engine, org.alice, SESSIONS, {"text": "GROSSE"}))["sessions"]["totalCount"] == 1
    update = 'mutation($id: ID!) { updateSession(input: {id: $id, title: null}) { session { title } } }'
    await ok(engine, org.alice, update, {"id": str(session_id)})
    assert (await ok(engine, org.alice, SESSIONS, {"text": "GROSSE"}))["sessions"]["totalCount"] == 0


BAD_QUERIES = [
    ("ab", "at least 3 characters"),
    ("lisbon to", "at least 3 characters"),
    ('""', "at least 3 characters"),
    ("\u00e9\u0301", "at least 3 characters"),
    ("数据", "at least 3 characters"),
    ("", "at least one term"),
    ("   ", "at least one term"),
    (" ".join(f"t{i:02}" for i in range(17)), "at most 16 terms"),
    ("x" * 257, "at most 256 characters"),
    ('"unbalanced quote', "double quotes must be balanced"),
    ('lisbon "trip', "double quotes must be balanced"),
    ("lisbon \ud800\ud800\ud800", "Unicode text"),
]


@pytest.mark.parametrize(("query", "rule"), BAD_QUERIES, ids=repr)
async def test_a_bad_query_is_bad_user_input_naming_its_rule(engine, org, query, rule):
    for document, variables in ((SEARCH, {"q": query}), (SESSIONS, {"text": query})):
        result = await execute(engine, org.alice, document, variables)
        assert [e.extensions["code"] for e in result.errors] == ["BAD_USER_INPUT"]
        assert rule in result.errors[0].message


async def test_bad_page_arguments_are_bad_user_input(engine, org):
    assert await error_codes(engine, org.alice, SEARCH, {"q": "lisbon", "first": 101}) == ["BAD_USER_INPUT"]
    assert await error_codes(engine, org.alice, SEARCH, {"q": "lisbon", "after": "bm9wZQ"}) == ["BAD_USER_INPUT"]
    await store(engine, org.alice, events=[event_("LLM_OUTPUT", k, f"lisbon {k}") for k in range(3)])
    data = (await ok(engine, org.alice, SEARCH, {"q": "lisbon", "first": 1}))["searchEvents"]
    cursor = data["pageInfo"]["endCursor"]
    # A cursor is scoped to its query: another query's is refused, not silently followed.
    assert await error_codes(engine, org.alice, SEARCH, {"q": "porto", "after": cursor}) == ["BAD_USER_INPUT"]
    sessions_cursor = (await ok(engine, org.alice, "{ sessions { pageInfo { endCursor } } }"))["sessions"]["pageInfo"]["endCursor"]
    assert await error_codes(engine, org.alice, SEARCH, {"q": "lisbon", "after": sessions_cursor}) == ["BAD_USER_INPUT"]


@pytest.mark.parametrize("size", [1, 20, 100])
async def test_a_search_page_costs_the_same_statements_whatever_its_size(engine, org, size):
    await store(engine, org.alice, events=[event_("LLM_OUTPUT", k, f"needle {k}") for k in range(120)])
    document = """query($first: Int) { searchEvents(query: "NEEDLE", first: $first) { totalCount
      edges { cursor snippet matches { start length } node { id seq message timestamp elapsedMs } } } }"""
    with count_statements(engine) as counter:
        data = await ok(engine, org.alice, document, {"first": size})
    assert len(data["searchEvents"]["edges"]) == size and data["searchEvents"]["totalCount"] == 120
    assert counter.count == 2  # the page, and the count


# -- the index in step with every writer: a random mix of writes, then the index's answers
# against a plain scan of the stored contents


WORDS = ["lisbon", "Straße", "STRASSE", "数据库", "连接", "οδός", "ΟΔΟΣ", "🚀🚀", "İstanbul", "cafe\u0301", "café", "plan", "x_y%z"]
PROBES = ["lisbon", "strasse", "数据库", "οδοσ", '"🚀🚀 "', "istanbul", "café", "plan lisbon", "x_y%", '"库 连"']


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))


async def _scan(engine, viewer, query: str) -> list[str]:
    """A plain scan: every live visible event's message, folded in Python, holding every term."""
    terms = search_terms(query)
    async with engine.connect() as connection:
        rows = (await connection.execute(
            select(Event.content, Event.type, Event.timestamp, Event.seq, Event.id)
            .join(Session, Session.id == Event.session_id)
            .where(Session.deleted_at.is_(None), Session.org_id == viewer.org_id)
        )).all()
    hits = [
        r for r in rows
        if r.content is not None and r.type != "LLM_PARTIAL"
        and all(t in fold(r.content.decode("utf-8", "replace")) for t in terms)
    ]
    return [r.content.decode("utf-8", "replace") for r in sorted(hits, key=lambda r: (r.timestamp, r.seq, r.id), reverse=True)]


async def test_after_a_random_mix_of_writes_the_index_finds_what_a_plain_scan_finds(engine, org):
    rng = random.Random(18)
    sessions: list[str] = []
    create = 'mutation($t: String) { createSession(input: {title: $t}) { session { id } } }'
    append = 'mutation($id: ID!, $e: [EventInput!]!) { appendEvents(input: {sessionId: $id, events: $e}) { clientMutationId } }'
    rename = 'mutation($id: ID!, $t: String!) { renameSession(input: {id: $id, title: $t}) { clientMutationId } }'
    delete = 'mutation($id: ID!) { deleteSession(input: {id: $id}) { clientMutationId } }'
    for step in range(60):
        action = rng.choice(["import", "import", "create", "append", "append", "rename", "delete", "index"])
        if action == "index":  # some of what is queued goes into the index, the rest stays queued
            async with write_transaction(engine) as connection:
                await index_pending(connection, rng.randint(1, 8))
        elif action == "import" or not sessions:
            session_id = await store(engine, org.alice, step, title=_text(rng), turns=[
                turn_(f"t{k}", step, user_query=_text(rng), result=_text(rng),
                      events=[event_(rng.choice(["LLM_OUTPUT", "LLM_PROMPT", "LLM_PARTIAL"]), step + k / 10, _text(rng))])
                for k in range(rng.randint(0, 2))
            ], events=[event_("OUTPUT", step, _text(rng).encode() + rng.choice([b"", b"\xff"])) for _ in range(rng.randint(0, 3))])
            sessions.append(str(session_id))
        elif action == "create":
            data = await ok(engine, org.alice, create, {"t": _text(rng)[:60]})
            sessions.append(data["createSession"]["session"]["id"])
        elif action == "append":
            at = (T0 + timedelta(minutes=step)).isoformat()
            events = [{"type": "LLM_OUTPUT", "message": _text(rng), "timestamp": at} for _ in range(rng.randint(1, 3))]
            await ok(engine, org.alice, append, {"id": rng.choice(sessions), "e": events})
        elif action == "rename":
            await ok(engine, org.alice, rename, {"id": rng.choice(sessions), "t": _text(rng)[:60]})
        else:
            await ok(engine, org.alice, delete, {"id": sessions.pop(rng.randrange(len(sessions)))})
    async with engine.connect() as connection:
        assert 0 < await queued(connection) < await connection.scalar(select(func.count()).select_from(Event))
    hits = 0
    for probe in PROBES:  # some events indexed, some queued
        expected = await _scan(engine, org.alice, probe)
        assert await found(engine, org.alice, probe) == expected, probe
        hits += len(expected)
    assert hits > 50  # the probes find plenty: the comparison is not of empty lists
    assert await index_all(engine) > 0
    for probe in PROBES:  # all indexed
        assert await found(engine, org.alice, probe) == await _scan(engine, org.alice, probe), probe
    async with engine.connect() as connection:
        assert await queued(connection) == 0
        if engine.dialect.name == "postgresql":
            # Every event with a content is in the index once, with what the writer's fold
            # makes of its content as stored (SQLite's index is fed the same fold by SQL).
            rows = (await connection.execute(text(
                "SELECT e.content, s.search_text FROM events e LEFT JOIN events_search s ON s.event_id = e.id"
                " WHERE e.content IS NOT NULL"
            ))).all()
            assert rows and all(r.search_text == fold(r.content.decode("utf-8", "replace")) for r in rows)
        titles = (await connection.execute(select(Session.title, Session.search_title))).all()
    assert all(t.search_title == fold(t.title) for t in titles)


async def test_the_index_is_used_not_a_scan(engine, org):
    """The plan of a search reads the full-text index (FTS5 on SQLite, the trigram GIN index
    on PostgreSQL), not every event."""
    await store(engine, org.alice, events=[event_("LLM_OUTPUT", k, f"event {k}") for k in range(50)])
    assert await index_all(engine) == 50
    async with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            plan = (await connection.execute(text(
                "EXPLAIN QUERY PLAN SELECT rowid FROM events_search WHERE events_search MATCH sg_trigram_query('vent 4')"
            ))).all()
            assert any("VIRTUAL TABLE INDEX" in str(row) for row in plan)
        else:
            await connection.execute(text("SET LOCAL enable_seqscan = off"))
            plan = (await connection.execute(text(
                "EXPLAIN SELECT event_id FROM events_search WHERE search_text LIKE '%vent 4%'"
            ))).all()
            assert any("events_search_trgm" in str(row) for row in plan)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_migration_makes_stored_texts_searchable(backend):
    """Data stored before revision 0005 is found after it: the migration folds the texts
    already stored and builds the index over them."""
    org_id, user_id, session_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with fresh_database(backend, "0003") as url:
        engine = create_engine(url)
        try:
            ids = (lambda u: u.hex) if backend == "sqlite" else (lambda u: u)
            at = "2025-10-28 06:00:00.000000" if backend == "sqlite" else T0
            async with engine.begin() as connection:
                await connection.execute(text("INSERT INTO users (id, org_id, created_at) VALUES (:u, :o, :t)"),
                                         {"u": ids(user_id), "o": ids(org_id), "t": at})
                await connection.execute(text(
                    "INSERT INTO sessions (id, org_id, user_id, title, metadata, created_at, updated_at, last_activity_at,"
                    " turn_count, tokens_used, event_count) VALUES (:s, :o, :u, 'Große Reise', '{}', :t, :t, :t, 1, 0, 2)"
                ), {"s": ids(session_id), "o": ids(org_id), "u": ids(user_id), "t": at})
                await connection.execute(text(
                    "INSERT INTO turns (session_id, position, task_id, status, created_at, tokens_used, agents, user_query, result)"
                    " VALUES (:s, 1, 'task-1', 'COMPLETED', :t, 0, '[]', 'Where to in LISBON?', 'Alfama')"
                ), {"s": ids(session_id), "t": at})
                for seq, content in ((1, "连接数据库失败".encode()), (2, b"\xffDISK FULL")):
                    await connection.execute(text(
                        "INSERT INTO events (session_id, seq, type, content, timestamp) VALUES (:s, :q, 'OUTPUT', :c, :t)"
                    ), {"s": ids(session_id), "q": seq, "c": content, "t": at})
            await upgrade_async(url)
            viewer = Viewer(user_id, org_id, "USER", "USER")
            assert await found(engine, viewer, "数据库") == ["连接数据库失败"]
            assert await found(engine, viewer, "disk full") == ["\ufffdDISK FULL"]
            for query in ("GROSSE", "lisbon", "alfama", "数据库"):
                assert (await ok(engine, viewer, SESSIONS, {"text": query}))["sessions"]["totalCount"] == 1, query
            # Written after the migration: in the index too (the writer keeps it from then on).
            await store(engine, viewer, 1, events=[event_("OUTPUT", 2, "disk full again")])
            assert await found(engine, viewer, "disk full") == ["disk full again", "\ufffdDISK FULL"]
        finally:
            await engine.dispose()


# -- the index brought up to date after the writes: a queue, an indexer


async def test_an_event_is_found_from_its_commit_queued_then_indexed_alike(engine, org):
    await store(engine, org.alice, 1, events=[event_("OUTPUT", k, f"Lisbon trip {k}") for k in range(3)])
    await store(engine, org.bob, 2, events=[event_("OUTPUT", 1, "Lisbon, Bob's")])
    expected = ["Lisbon trip 2", "Lisbon trip 1", "Lisbon trip 0"]
    async with engine.connect() as connection:
        assert await queued(connection) == 4
    assert await found(engine, org.alice, "LISBON") == expected
    assert (await ok(engine, org.alice, SESSIONS, {"text": "lisbon"}))["sessions"]["totalCount"] == 1
    assert await index_all(engine, batch=3) == 4  # two transactions
    async with engine.connect() as connection:
        assert await queued(connection) == 0
    assert await found(engine, org.alice, "LISBON") == expected
    assert (await ok(engine, org.alice, SESSIONS, {"text": "lisbon"}))["sessions"]["totalCount"] == 1
    assert await index_all(engine) == 0


async def test_indexers_running_at_once_index_every_event_once(engine, org):
    """As the server processes of several replicas do (PostgreSQL: each takes the queued
    rows no other holds; SQLite: one writer at a time)."""
    await store(engine, org.alice, events=[event_("OUTPUT", k, f"event number {k}") for k in range(300)])
    moved = await asyncio.gather(*(index_all(engine, batch=7) for _ in range(4)))
    assert sum(moved) == 300
    async with engine.connect() as connection:
        assert await queued(connection) == 0
        if engine.dialect.name == "postgresql":
            assert await connection.scalar(text("SELECT count(DISTINCT event_id) FROM events_search")) == 300
    assert len(await found(engine, org.alice, "number")) == 300


async def _index_rows(connection, probe: str) -> int:
    """How many events the index itself holds `probe` for (no queue, no check)."""
    if connection.dialect.name == "sqlite":
        return await connection.scalar(text("SELECT count(*) FROM events_search WHERE events_search MATCH sg_trigram_query(:p)"), {"p": probe})
    return await connection.scalar(text("SELECT count(*) FROM events_search WHERE search_text LIKE '%' || :p || '%'"), {"p": probe})


async def test_events_changed_or_deleted_by_another_tool_leave_the_index_in_step(engine, org):
    """An operator's SQL deleting events (both databases) or changing their content (SQLite's
    triggers; see README) takes them out of the index whether they were indexed or queued."""
    await store(engine, org.alice, 1, events=[event_("OUTPUT", 1, "alpha indexed")])
    assert await index_all(engine) == 1
    await store(engine, org.alice, 2, events=[event_("OUTPUT", 1, "alpha queued")])
    if engine.dialect.name == "sqlite":
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE events SET content = CAST(replace(CAST(content AS TEXT), 'alpha', 'omega') AS BLOB)"))
        assert await found(engine, org.alice, "omega") == ["omega queued", "omega indexed"]
        assert await found(engine, org.alice, "alpha") == []
        async with engine.connect() as connection:
            assert (await _index_rows(connection, "omega"), await _index_rows(connection, "alpha")) == (1, 0)
    async with engine.begin() as connection:
        await connection.execute(text("DELETE FROM events"))
    await index_all(engine)
    async with engine.connect() as connection:
        assert await queued(connection) == 0
        assert await _index_rows(connection, "indexed") == 0
    await store(engine, org.alice, 3, events=[event_("OUTPUT", 1, "alpha again")])
    assert await index_all(engine) == 1
    assert await found(engine, org.alice, "alpha") == ["alpha again"]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_migration_0008_downgraded_keeps_queued_and_indexed_events_searchable(backend):
    """Down to 0007 (one index, no queue), what was queued is indexed too; up again, all
    found."""
    from alembic import command

    from sessiongraph.migrations import alembic_config

    async with fresh_database(backend) as url:
        engine = create_engine(url)
        try:
            org = await make_org(engine)
            await store(engine, org.alice, 1, events=[event_("OUTPUT", 1, "Kyoto indexed")])
            assert await index_all(engine) == 1
            await store(engine, org.alice, 2, events=[event_("OUTPUT", 1, "KYOTO queued")])
            await asyncio.to_thread(command.downgrade, alembic_config(url), "0007")
            async with engine.connect() as connection:
                if backend == "sqlite":
                    held = [await _index_rows(connection, probe) for probe in ("kyoto", "indexed", "queued")]
                    assert held == [2, 1, 1]
                else:
                    texts = (await connection.execute(text("SELECT search_text FROM events ORDER BY id"))).scalars().all()
                    assert texts == ["kyoto indexed", "kyoto queued"]
                    assert await connection.scalar(text(
                        "SELECT count(*) FROM pg_indexes WHERE indexname = 'events_search_text_trgm'")) == 1
            await upgrade_async(url)
            assert await found(engine, org.alice, "kyoto") == ["KYOTO queued", "Kyoto indexed"]
            async with engine.connect() as connection:
                assert await queued(connection) == 0  # on PostgreSQL moved into the index table whole
        finally:
            await engine.dispose()
