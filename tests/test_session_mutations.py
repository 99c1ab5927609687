"""renameSession and deleteSession: the title rules, lookups by each kind of id, who may
change what, soft deletion and its idempotence, the external id freed by a delete, the
payload's freshness within one request, and concurrent writers on both databases."""

import asyncio
import uuid
from datetime import datetime

import pytest
from sqlalchemy import func, select

from sessiongraph.models import Event, Session, Turn
from sessiongraph.resolvers.context import RequestContext
from sessiongraph.resolvers.ids import to_global_id
from sessiongraph.schema import schema
from tests.conftest import api_key, count_statements, error_codes, event_, execute, ok, store, turn_
from tests.test_subscriptions import EVENTS, UPDATES, subscribe, take

RENAME = """mutation($id: ID!, $title: String!, $cmid: String) {
  renameSession(input: {id: $id, title: $title, clientMutationId: $cmid}) {
    clientMutationId
    session { id sessionId title updatedAt turns { totalCount } }
  }
}"""

DELETE = """mutation($id: ID!, $cmid: String) {
  deleteSession(input: {id: $id, clientMutationId: $cmid}) { deletedSessionId clientMutationId }
}"""

READ = "query($id: ID!) { session(id: $id) { title updatedAt } }"


async def stored(engine, session_id: uuid.UUID):
    """The session's row as stored, deleted or not."""
    async with engine.connect() as connection:
        return (await connection.execute(select(Session.__table__).where(Session.id == session_id))).one()


async def rename(engine, viewer, id_, title, cmid=None) -> dict:
    return (await ok(engine, viewer, RENAME, {"id": id_, "title": title, "cmid": cmid}))["renameSession"]


async def delete(engine, viewer, id_, cmid=None) -> dict:
    return (await ok(engine, viewer, DELETE, {"id": id_, "cmid": cmid}))["deleteSession"]


async def run_in(context: RequestContext, query: str, variables: dict):
    """Executes in a context shared with other operations: what one request would do."""
    result = await schema.execute(query, variable_values=variables, context_value=context)
    assert result.errors is None, result.errors
    return result.data


def gid(session_id: uuid.UUID) -> str:
    return to_global_id("Session", session_id)


# --- renameSession ---------------------------------------------------------------------


async def test_rename_sets_the_cleaned_title_moves_updated_at_and_echoes_client_mutation_id(engine, org):
    session_id = await store(engine, org.alice, title="Old", turns=[turn_("t1", 1)])
    before = await stored(engine, session_id)
    payload = await rename(engine, org.alice, gid(session_id), "\u3000 Trip\u200b to\x07 Lisbon\ufeff \n", "m-1")
    assert payload["clientMutationId"] == "m-1"
    assert payload["session"]["title"] == "Trip to Lisbon"
    assert payload["session"]["sessionId"] == str(session_id)
    assert payload["session"]["turns"]["totalCount"] == 1
    assert datetime.fromisoformat(payload["session"]["updatedAt"]) > before.updated_at
    after = (await ok(engine, org.alice, READ, {"id": gid(session_id)}))["session"]
    assert after == {"title": "Trip to Lisbon", "updatedAt": payload["session"]["updatedAt"]}


@pytest.mark.parametrize(
    ("title", "rule"),
    [
        ("", "empty after trimming white space"),
        (" \t\u3000\u2028\n", "empty after trimming white space"),
        ("\u200b\x07\ufeff", "empty after removing control characters"),
        (" \x00\x1b ", "empty after removing control characters"),
        ("x" * 61, "longer than 60 characters"),
        ("\U0001f600" * 61, "longer than 60 characters"),
    ],
    ids=["empty", "white-space", "invisible", "controls", "61-ascii", "61-emoji"],
)
async def test_rename_to_a_title_breaking_a_rule_is_bad_user_input_naming_it_and_changes_nothing(engine, org, title, rule):
    session_id = await store(engine, org.alice, title="Kept")
    before = await stored(engine, session_id)
    result = await execute(engine, org.alice, RENAME, {"id": gid(session_id), "title": title})
    [error] = result.errors
    assert error.extensions["code"] == "BAD_USER_INPUT" and rule in error.message
    after = await stored(engine, session_id)
    assert (after.title, after.updated_at) == ("Kept", before.updated_at)


async def test_title_limit_counts_code_points_and_is_measured_after_cleaning(engine, org):
    session_id = await store(engine, org.alice)
    emoji = "\U0001f600" * 60  # 60 code points, 120 UTF-16 units
    assert (await rename(engine, org.alice, gid(session_id), emoji))["session"]["title"] == emoji
    padded = "  " + "y" * 60 + "\u200b\x07  "
    assert (await rename(engine, org.alice, gid(session_id), padded))["session"]["title"] == "y" * 60


@pytest.mark.parametrize("kind", ["global id", "uuid", "external id"])
async def test_rename_finds_the_session_by_each_kind_of_id(engine, org, kind):
    session_id = await store(engine, org.alice, external_id="chat-1", title="Old")
    id_ = {"global id": gid(session_id), "uuid": str(session_id), "external id": "chat-1"}[kind]
    payload = await rename(engine, org.alice, id_, "New")
    assert payload["session"]["sessionId"] == str(session_id)
    assert (await stored(engine, session_id)).title == "New"


async def test_admin_renames_any_session_of_its_organisation(engine, org):
    session_id = await store(engine, org.alice, title="Old")
    assert (await rename(engine, org.admin, str(session_id), "By the admin"))["session"]["title"] == "By the admin"


@pytest.mark.parametrize(
    "case", ["another user's", "another organisation's, by its admin", "missing", "another user's external id"]
)
async def test_rename_of_a_session_the_caller_may_not_see_is_not_found_and_changes_nothing(engine, org, other_org, case):
    session_id = await store(engine, org.alice, title="Kept", external_id="chat-1")
    viewer, id_ = {
        "another user's": (org.bob, gid(session_id)),
        "another organisation's, by its admin": (other_org.admin, str(session_id)),
        "missing": (org.alice, gid(uuid.uuid4())),
        "another user's external id": (org.bob, "chat-1"),
    }[case]
    assert await error_codes(engine, viewer, RENAME, {"id": id_, "title": "Taken"}) == ["NOT_FOUND"]
    assert (await stored(engine, session_id)).title == "Kept"


async def test_rename_of_a_deleted_session_is_not_found_and_changes_nothing(engine, org):
    session_id = await store(engine, org.alice, title="Kept", external_id="chat-1")
    await delete(engine, org.alice, "chat-1")
    before = await stored(engine, session_id)
    for viewer, id_ in [(org.alice, gid(session_id)), (org.alice, "chat-1"), (org.admin, str(session_id))]:
        assert await error_codes(engine, viewer, RENAME, {"id": id_, "title": "Revived?"}) == ["NOT_FOUND"]
    after = await stored(engine, session_id)
    assert (after.title, after.updated_at, after.deleted_at) == ("Kept", before.updated_at, before.deleted_at)


@pytest.mark.parametrize("id_", ["", "x" * 256, "chat\x00one"], ids=["empty", "too-long", "control"])
async def test_an_id_that_can_name_no_session_is_bad_user_input(engine, org, id_):
    assert await error_codes(engine, org.alice, RENAME, {"id": id_, "title": "T"}) == ["BAD_USER_INPUT"]
    assert await error_codes(engine, org.alice, DELETE, {"id": id_}) == ["BAD_USER_INPUT"]


async def test_rename_payload_and_later_reads_of_the_same_request_see_the_new_title(engine, org):
    session_id = await store(engine, org.alice, title="Old")
    context = RequestContext(engine, org.alice)
    try:
        assert (await run_in(context, READ, {"id": gid(session_id)}))["session"]["title"] == "Old"
        renamed = await run_in(context, RENAME, {"id": gid(session_id), "title": "New"})
        assert renamed["renameSession"]["session"]["title"] == "New"
        assert (await run_in(context, READ, {"id": gid(session_id)}))["session"]["title"] == "New"
        node = await run_in(context, "query($id: ID!) { node(id: $id) { ... on Session { title } } }", {"id": gid(session_id)})
        assert node["node"] == {"title": "New"}
    finally:
        await context.close()


async def test_mutations_of_one_operation_each_see_the_one_before(engine, org):
    session_id = await store(engine, org.alice, title="Old")
    document = """mutation($id: ID!) {
      a: renameSession(input: {id: $id, title: "First"}) { session { title } }
      b: renameSession(input: {id: $id, title: "Second"}) { session { title } }
      c: deleteSession(input: {id: $id}) { deletedSessionId }
      d: renameSession(input: {id: $id, title: "Third"}) { session { title } }
    }"""
    result = await execute(engine, org.alice, document, {"id": gid(session_id)})
    assert [e.extensions["code"] for e in result.errors] == ["NOT_FOUND"]
    assert result.errors[0].path == ["d"]
    assert result.data is None  # d's payload is non-null, so the error nulls the whole root
    row = await stored(engine, session_id)
    assert row.title == "Second" and row.deleted_at is not None


# --- deleteSession ---------------------------------------------------------------------


async def test_delete_is_soft_and_records_when_and_by_whom(engine, org):
    session_id = await store(
        engine, org.alice, turns=[turn_("t1", 1, [event_("LLM_OUTPUT", 1.5, "hi")])], events=[event_("INPUT", 0.5, "x")]
    )
    payload = await delete(engine, org.alice, str(session_id), "del-1")
    assert payload == {"deletedSessionId": gid(session_id), "clientMutationId": "del-1"}
    row = await stored(engine, session_id)
    assert row.deleted_at is not None and row.deleted_by == org.alice.user_id
    async with engine.connect() as connection:
        turns = await connection.scalar(select(func.count()).select_from(Turn).where(Turn.session_id == session_id))
        events = await connection.scalar(select(func.count()).select_from(Event).where(Event.session_id == session_id))
    assert (turns, events) == (1, 2)


async def test_deleted_session_is_invisible_to_every_read(engine, org):
    session_id = await store(
        engine, org.alice, external_id="chat-1", turns=[turn_("t1", 1, [event_("LLM_OUTPUT", 1.5, "hi")])]
    )
    kept = await store(engine, org.alice, 5)
    ids = await ok(
        engine, org.alice,
        "query($id: ID!) { session(id: $id) { turns { nodes { id events { nodes { id } } } } } }",
        {"id": gid(session_id)},
    )
    [turn] = ids["session"]["turns"]["nodes"]
    turn_id, event_id = turn["id"], turn["events"]["nodes"][0]["id"]
    await delete(engine, org.alice, gid(session_id))

    for viewer in (org.alice, org.admin):
        for id_ in (gid(session_id), str(session_id), "chat-1"):
            assert (await ok(engine, viewer, READ, {"id": id_}))["session"] is None
        listed = await ok(engine, viewer, "{ sessions { totalCount nodes { sessionId } } }")
        assert listed["sessions"] == {"totalCount": 1, "nodes": [{"sessionId": str(kept)}]}
        filtered = await ok(engine, viewer, '{ sessions(filter: {externalIds: ["chat-1"]}) { totalCount nodes { id } } }')
        assert filtered["sessions"] == {"totalCount": 0, "nodes": []}
        nodes = await ok(
            engine, viewer, "query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": [gid(session_id), turn_id, event_id, gid(kept)]}
        )
        assert nodes["nodes"] == [None, None, None, {"id": gid(kept)}]
        for id_ in (gid(session_id), turn_id, event_id):
            assert (await ok(engine, viewer, "query($id: ID!) { node(id: $id) { id } }", {"id": id_}))["node"] is None


async def test_delete_within_a_request_hides_the_session_from_its_later_reads(engine, org):
    session_id = await store(engine, org.alice)
    context = RequestContext(engine, org.alice)
    try:
        assert (await run_in(context, READ, {"id": gid(session_id)}))["session"] is not None
        await run_in(context, DELETE, {"id": gid(session_id)})
        assert (await run_in(context, READ, {"id": gid(session_id)}))["session"] is None
        assert (await run_in(context, "query($id: ID!) { node(id: $id) { id } }", {"id": gid(session_id)}))["node"] is None
    finally:
        await context.close()


async def test_deleting_again_succeeds_with_the_same_payload_for_the_owner_and_its_admin(engine, org):
    session_id = await store(engine, org.alice, external_id="chat-1")
    first = await delete(engine, org.admin, str(session_id), "same")
    first_row = await stored(engine, session_id)
    for viewer, id_ in [(org.alice, gid(session_id)), (org.alice, "chat-1"), (org.alice, str(session_id)), (org.admin, gid(session_id))]:
        assert await delete(engine, viewer, id_, "same") == first
    row = await stored(engine, session_id)
    assert (row.deleted_at, row.deleted_by) == (first_row.deleted_at, org.admin.user_id)


@pytest.mark.parametrize("deleted", [False, True], ids=["live", "deleted"])
async def test_delete_by_anyone_else_is_not_found_and_changes_nothing(engine, org, other_org, deleted):
    session_id = await store(engine, org.alice, external_id="chat-1")
    if deleted:
        await delete(engine, org.alice, "chat-1")
    before = await stored(engine, session_id)
    for viewer, id_ in [(org.bob, gid(session_id)), (org.bob, "chat-1"), (other_org.admin, str(session_id)), (other_org.alice, gid(session_id))]:
        assert await error_codes(engine, viewer, DELETE, {"id": id_}) == ["NOT_FOUND"]
    after = await stored(engine, session_id)
    assert (after.deleted_at, after.deleted_by) == (before.deleted_at, before.deleted_by)


async def test_delete_of_a_missing_session_is_not_found(engine, org):
    assert await error_codes(engine, org.alice, DELETE, {"id": gid(uuid.uuid4())}) == ["NOT_FOUND"]
    assert await error_codes(engine, org.alice, DELETE, {"id": "no-such-chat"}) == ["NOT_FOUND"]


async def test_deleted_sessions_external_id_is_free_for_a_new_live_session(engine, org):
    old = await store(engine, org.alice, 1, external_id="chat-1", title="Old")
    await delete(engine, org.alice, "chat-1")
    new = await store(engine, org.alice, 2, external_id="chat-1", title="New", turns=[turn_("t1", 3)])
    assert new != old
    found = await ok(engine, org.alice, "query { session(id: \"chat-1\") { sessionId title turnCount } }")
    assert found["session"] == {"sessionId": str(new), "title": "New", "turnCount": 1}
    assert (await stored(engine, old)).turn_count == 0  # the import did not add to the deleted one

    # Mutations by that external id act on the live session; deleting it again by the same
    # external id answers for the one deleted last.
    assert (await rename(engine, org.alice, "chat-1", "Renamed"))["session"]["sessionId"] == str(new)
    assert (await stored(engine, old)).title == "Old"
    assert (await delete(engine, org.alice, "chat-1"))["deletedSessionId"] == gid(new)
    assert (await delete(engine, org.alice, "chat-1"))["deletedSessionId"] == gid(new)


async def test_each_mutation_is_one_lookup_and_one_update_of_the_session(engine, org):
    session_id = await store(engine, org.alice)
    with count_statements(engine) as renaming:
        await ok(engine, org.alice, "mutation($id: ID!) { renameSession(input: {id: $id, title: \"T\"}) { session { title } } }", {"id": gid(session_id)})
    with count_statements(engine) as deleting:
        await delete(engine, org.alice, gid(session_id))
    with count_statements(engine) as repeating:
        await delete(engine, org.alice, gid(session_id))
    # Besides the transaction's own statements (BEGIN IMMEDIATE on SQLite, the NOTIFY of the
    # change on PostgreSQL): what each costs on the sessions table.
    on_sessions = [[s for s in c.statements if "sessions" in s] for c in (renaming, deleting, repeating)]
    assert [len(s) for s in on_sessions] == [2, 2, 1]


async def test_mutations_over_http_with_an_api_key(client, engine, org):
    session_id = await store(engine, org.alice, external_id="chat-1")
    headers = {"X-API-Key": await api_key(engine, org.alice)}
    renamed = await client.post("/graphql", json={"query": RENAME, "variables": {"id": "chat-1", "title": "Over HTTP"}}, headers=headers)
    assert renamed.status_code == 200
    assert renamed.json()["data"]["renameSession"]["session"]["title"] == "Over HTTP"
    deleted = await client.post("/graphql", json={"query": DELETE, "variables": {"id": "chat-1"}}, headers=headers)
    assert deleted.json()["data"]["deleteSession"]["deletedSessionId"] == gid(session_id)
    again = await client.post("/graphql", json={"query": RENAME, "variables": {"id": "chat-1", "title": "x"}}, headers=headers)
    assert [e["extensions"]["code"] for e in again.json()["errors"]] == ["NOT_FOUND"]


# --- subscribers ------------------------------------------------------------------------


async def test_rename_and_delete_reach_session_updates_once_and_only_for_those_who_see_them(engine, org):
    session_id = await store(engine, org.alice, title="Old")
    alices = await subscribe(engine, org.alice, UPDATES)
    bobs = await subscribe(engine, org.bob, UPDATES)
    try:
        await rename(engine, org.alice, gid(session_id), "New")
        # Read before the delete: a RENAMED read after it is skipped (the session is gone,
        # its DELETED follows), so the subscriber would race the delete.
        got = [d["sessionUpdates"] for d in await take(alices, 1)]
        await delete(engine, org.admin, gid(session_id))
        await delete(engine, org.alice, gid(session_id))  # a repeat changes nothing: no notice
        assert await error_codes(engine, org.alice, RENAME, {"id": gid(session_id), "title": "No"}) == ["NOT_FOUND"]
        marker = await store(engine, org.alice, 9)
        await rename(engine, org.alice, gid(marker), "Marker")
        await rename(engine, org.bob, gid(await store(engine, org.bob, 9)), "Bob's")
        got += [d["sessionUpdates"] for d in await take(alices, 2)]
        assert [(u["kind"], u["sessionId"], u["session"]) for u in got] == [
            ("RENAMED", gid(session_id), {"title": "New", "turnCount": 0}),
            ("DELETED", gid(session_id), None),
            ("RENAMED", gid(marker), {"title": "Marker", "turnCount": 0}),
        ]
        [bob_update] = await take(bobs, 1)
        assert bob_update["sessionUpdates"]["session"]["title"] == "Bob's"
    finally:
        await alices.aclose()
        await bobs.aclose()


async def test_delete_session_completes_the_sessions_event_stream(engine, org):
    session_id = await store(engine, org.alice)
    stream = await subscribe(engine, org.alice, EVENTS, {"id": gid(session_id)})
    try:
        await delete(engine, org.alice, gid(session_id))
        with pytest.raises(StopAsyncIteration):
            await stream.next()
    finally:
        await stream.aclose()


# --- concurrency -----------------------------------------------------------------------

WRITERS = 16


async def test_concurrent_renames_all_succeed_and_leave_one_of_their_titles(engine, org):
    session_id = await store(engine, org.alice, title="Old")
    before = await stored(engine, session_id)
    titles = [f"Title {i}" for i in range(WRITERS)]
    results = await asyncio.gather(
        *(execute(engine, org.alice if i % 2 else org.admin, RENAME, {"id": gid(session_id), "title": t}) for i, t in enumerate(titles))
    )
    assert [r.errors for r in results] == [None] * WRITERS
    assert [r.data["renameSession"]["session"]["title"] for r in results] == titles
    after = await stored(engine, session_id)
    assert after.title in titles and after.updated_at > before.updated_at and after.deleted_at is None


async def test_renames_racing_a_delete_never_bring_the_session_back(engine, org):
    sessions = [await store(engine, org.alice, i, title="Old") for i in range(4)]
    calls = []
    for session_id in sessions:
        for i in range(WRITERS):
            if i == WRITERS // 2:
                calls.append(("delete", session_id, None))
            calls.append(("rename", session_id, f"{session_id.hex[:6]} {i}"))
    results = await asyncio.gather(
        *(
            execute(engine, org.alice, RENAME, {"id": gid(s), "title": t}) if kind == "rename"
            else execute(engine, org.alice, DELETE, {"id": gid(s)})
            for kind, s, t in calls
        )
    )
    outcomes: dict[uuid.UUID, dict[str, list[str]]] = {s: {"renamed": [], "refused": []} for s in sessions}
    for (kind, session_id, title), result in zip(calls, results, strict=True):
        if kind == "delete":
            assert result.errors is None, result.errors
        elif result.errors is None:
            outcomes[session_id]["renamed"].append(title)
        else:
            assert [e.extensions["code"] for e in result.errors] == ["NOT_FOUND"]
            outcomes[session_id]["refused"].append(title)
    for session_id in sessions:
        row = await stored(engine, session_id)
        assert row.deleted_at is not None and row.deleted_by == org.alice.user_id
        assert (await ok(engine, org.alice, READ, {"id": gid(session_id)}))["session"] is None
        renamed, refused = outcomes[session_id]["renamed"], outcomes[session_id]["refused"]
        # A refused rename wrote nothing: the stored title is the last successful one's.
        assert row.title in (renamed or ["Old"]) and row.title not in refused
    assert sum(len(o["refused"]) for o in outcomes.values()) > 0, "no rename ran after a delete: no race was exercised"


async def test_concurrent_deletes_all_succeed_and_record_one_deleter(engine, org):
    session_id = await store(engine, org.alice)
    viewers = [org.alice, org.admin] * (WRITERS // 2)
    results = await asyncio.gather(*(execute(engine, v, DELETE, {"id": gid(session_id)}) for v in viewers))
    assert [r.errors for r in results] == [None] * WRITERS
    assert {r.data["deleteSession"]["deletedSessionId"] for r in results} == {gid(session_id)}
    row = await stored(engine, session_id)
    assert row.deleted_at is not None and row.deleted_by in {org.alice.user_id, org.admin.user_id}
