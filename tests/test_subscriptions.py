"""sessionEvents and sessionUpdates: replay then live with no gap and no duplicate at the
seam, resuming, filters, visibility, deletion, back-pressure and limits; over
graphql-transport-ws with the contract's close codes; across two server processes on one
PostgreSQL database."""

import asyncio
import contextlib
import json
import uuid

import pytest
import uvicorn
import websockets
from sqlalchemy import update
from websockets.asyncio.client import connect

from sessiongraph.transport.app import create_app
from sessiongraph.config import Settings
from sessiongraph.models import Session
from sessiongraph.live.broker import Limits, broker_for, publishing, session_changed
from sessiongraph.resolvers.context import RequestContext, Viewer
from sessiongraph.schema import schema
from sessiongraph.transport.websocket import SocketLimits
from tests.conftest import BACKENDS, api_key, execute, ok
from tests.test_recording import append, complete, create, machine, start

EVENTS = """
subscription($id: ID!, $after: Int, $types: [String!], $partial: Boolean) {
  sessionEvents(sessionId: $id, afterSeq: $after, types: $types, includePartial: $partial) {
    seq type message turn { turn } session { turnCount }
  }
}"""
UPDATES = """
subscription { sessionUpdates { kind sessionId session { title turnCount } turn { taskId status } } }"""
WAIT = 10  # seconds: the longest any single delivery may take in these tests


class Stream:
    """A subscription executed against the schema, as the WebSocket does. Strawberry runs
    the resolver on the first read, so that read starts at once."""

    def __init__(self, results, context: RequestContext) -> None:
        self.results, self.context = results, context
        self.pending: asyncio.Future | None = asyncio.ensure_future(results.__anext__())

    async def next(self):
        pending, self.pending = self.pending, None
        return await asyncio.wait_for(pending or self.results.__anext__(), WAIT)

    async def aclose(self) -> None:
        if self.pending is not None:
            self.pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await self.pending
        await self.results.aclose()
        await self.context.close()


async def open_stream(engine, viewer: Viewer, query: str, variables: dict | None = None) -> Stream:
    """A stream that has reached the broker (or failed before it)."""
    broker = broker_for(engine)
    before = broker.count()
    context = RequestContext(engine, viewer)
    stream = Stream(await schema.subscribe(query, variable_values=variables, context_value=context), context)
    for _ in range(WAIT * 100):
        if broker.count() > before or stream.pending.done():
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # and has read where "now" is
    return stream


async def subscribe(engine, viewer: Viewer, query: str, variables: dict | None = None) -> Stream:
    stream = await open_stream(engine, viewer, query, variables)
    assert not stream.pending.done() or stream.pending.result().errors is None, stream.pending.result()
    return stream


async def refused(engine, viewer: Viewer, query: str, variables: dict | None = None) -> list[str]:
    """The codes of a subscription refused before anything was sent."""
    stream = await open_stream(engine, viewer, query, variables)
    result = await stream.next()
    await stream.aclose()
    return [e.extensions["code"] for e in result.errors]


async def take(stream: Stream, count: int) -> list[dict]:
    """The data of the next `count` results, each of which must have no error."""
    found = []
    for _ in range(count):
        result = await stream.next()
        assert result.errors is None, result.errors
        found.append(result.data)
    return found


def outputs(count: int, prefix: str = "") -> list[dict]:
    return [{"type": "OUTPUT", "message": f"{prefix}{i}"} for i in range(count)]


# -- sessionEvents


async def test_replay_after_seq_then_live_events_in_order(engine, org):
    session = await create(engine, org.alice)
    await append(engine, org.alice, session["id"], outputs(5))
    stream = await subscribe(engine, org.alice, EVENTS, {"id": session["id"], "after": 2})
    await append(engine, org.alice, session["id"], outputs(2, "live-"))
    got = await take(stream, 5)
    await stream.aclose()
    assert [d["sessionEvents"]["seq"] for d in got] == [3, 4, 5, 6, 7]
    assert got[-1]["sessionEvents"]["message"] == "live-1"


async def test_without_after_seq_only_events_appended_from_now_on(engine, org):
    session = await create(engine, org.alice)
    await append(engine, org.alice, session["id"], outputs(3))
    stream = await subscribe(engine, org.alice, EVENTS, {"id": session["id"]})
    await append(engine, org.alice, session["id"], outputs(1, "new-"))
    [got] = await take(stream, 1)
    await stream.aclose()
    assert (got["sessionEvents"]["seq"], got["sessionEvents"]["message"]) == (4, "new-0")


async def test_no_gap_and_no_duplicate_while_writers_append_during_the_replay(engine, org):
    session = await create(engine, org.alice)
    await append(engine, org.alice, session["id"], outputs(700))  # longer than a replay page
    stream = await subscribe(engine, org.alice, EVENTS, {"id": session["id"], "after": 0})

    async def writer() -> None:
        for batch in range(10):
            await append(engine, org.alice, session["id"], outputs(30, f"{batch}-"))

    writing = asyncio.create_task(writer())
    got = await take(stream, 1000)
    await writing
    await stream.aclose()
    assert [d["sessionEvents"]["seq"] for d in got] == list(range(1, 1001))


async def test_a_subscriber_that_resumes_with_its_last_seq_gets_every_event_exactly_once(engine, org):
    session = await create(engine, org.alice)
    first = await subscribe(engine, org.alice, EVENTS, {"id": session["id"], "after": 0})
    await append(engine, org.alice, session["id"], outputs(50))
    seen = [d["sessionEvents"]["seq"] for d in await take(first, 20)]
    await first.aclose()  # disconnects; writers go on
    await append(engine, org.alice, session["id"], outputs(50))
    resumed = await subscribe(engine, org.alice, EVENTS, {"id": session["id"], "after": seen[-1]})
    await append(engine, org.alice, session["id"], outputs(50))
    seen += [d["sessionEvents"]["seq"] for d in await take(resumed, 130)]
    await resumed.aclose()
    assert seen == list(range(1, 151))


async def test_types_and_include_partial_filter_stored_and_live_events(engine, org):
    session = await create(engine, org.alice)
    mixed = [{"type": t} for t in ("LLM_PARTIAL", "LLM_OUTPUT", "TOOL_INVOKED")]
    await append(engine, org.alice, session["id"], mixed)
    default = await subscribe(engine, org.alice, EVENTS, {"id": session["id"], "after": 0})
    partial = await subscribe(engine, org.alice, EVENTS, {"id": session["id"], "after": 0, "partial": True})
    tools = await subscribe(engine, org.alice, EVENTS, {"id": session["id"], "after": 0, "types": ["TOOL_INVOKED"]})
    await append(engine, org.alice, session["id"], mixed)

    async def types_of(stream, count):
        got = [d["sessionEvents"]["type"] for d in await take(stream, count)]
        await stream.aclose()
        return got

    assert await types_of(default, 4) == ["LLM_OUTPUT", "TOOL_INVOKED"] * 2
    assert await types_of(partial, 6) == ["LLM_PARTIAL", "LLM_OUTPUT", "TOOL_INVOKED"] * 2
    assert await types_of(tools, 2) == ["TOOL_INVOKED"] * 2


async def test_events_come_with_their_turn_and_the_session_as_it_is_now(engine, org):
    session = await create(engine, org.alice)
    stream = await subscribe(engine, org.alice, EVENTS, {"id": session["id"]})
    turn = await start(engine, org.alice, session["id"])
    await append(engine, org.alice, session["id"], outputs(1), turn["id"])
    got = [d["sessionEvents"] for d in await take(stream, 1)]  # resolved before the second turn
    await start(engine, org.alice, session["id"], "task-2")
    await append(engine, org.alice, session["id"], outputs(1))
    got += [d["sessionEvents"] for d in await take(stream, 1)]
    await stream.aclose()
    assert (got[0]["turn"], got[0]["session"]["turnCount"]) == ({"turn": 1}, 1)
    assert (got[1]["turn"], got[1]["session"]["turnCount"]) == (None, 2)


async def test_a_session_the_caller_cannot_see_is_not_found_before_anything_is_sent(engine, org, other_org):
    bobs = await create(engine, org.bob)
    for viewer in (org.alice, other_org.admin):
        assert await refused(engine, viewer, EVENTS, {"id": bobs["id"]}) == ["NOT_FOUND"]
    admins = await subscribe(engine, org.admin, EVENTS, {"id": bobs["id"]})
    await admins.aclose()


async def test_the_subscription_completes_when_the_session_is_deleted(engine, org):
    session = await create(engine, org.alice)
    stream = await subscribe(engine, org.alice, EVENTS, {"id": session["id"]})
    await append(engine, org.alice, session["id"], outputs(2))
    await delete_announced(engine, session)
    got = await take(stream, 2)  # what was appended before still arrives
    assert [d["sessionEvents"]["seq"] for d in got] == [1, 2]
    with pytest.raises(StopAsyncIteration):
        await stream.next()


async def delete_announced(engine, session: dict) -> None:
    """What deleteSession does: marks the session deleted and announces DELETED in the same
    transaction."""
    async with publishing(engine) as publication:
        row = (await publication.connection.execute(
            update(Session).where(Session.id == uuid.UUID(session["sessionId"]))
            .values(deleted_at=Session.created_at).returning(*Session.__table__.c)
        )).one()
        publication.announce(session_changed("DELETED", row))


@contextlib.contextmanager
def broker_limits(engine, limits: Limits):
    broker = broker_for(engine)
    saved, broker.limits = broker.limits, limits
    try:
        yield
    finally:
        broker.limits = saved


async def test_a_subscriber_too_far_behind_is_ended_with_a_code_and_resumes_with_after_seq(engine, org):
    session = await create(engine, org.alice)
    with broker_limits(engine, Limits(queue=20)):
        slow = await subscribe(engine, org.alice, EVENTS, {"id": session["id"], "after": 0})
        fast = await subscribe(engine, org.alice, EVENTS, {"id": session["id"], "after": 0})
    seen_fast = []
    for batch in range(5):  # the fast one keeps up; the slow one reads nothing meanwhile
        await append(engine, org.alice, session["id"], outputs(10, f"{batch}-"))
        seen_fast += [d["sessionEvents"]["seq"] for d in await take(fast, 10)]
    await fast.aclose()
    assert seen_fast == list(range(1, 51))
    seen = []
    while (result := await slow.next()).errors is None:  # what fitted in its queue, then the error
        seen.append(result.data["sessionEvents"]["seq"])
    await slow.aclose()
    assert 20 <= len(seen) <= 21  # its queue, and the one it was reading when the rest came
    [error] = result.errors
    assert error.extensions == {"code": "TOO_FAR_BEHIND", "afterSeq": seen[-1]}
    resumed = await subscribe(engine, org.alice, EVENTS, {"id": session["id"], "after": error.extensions["afterSeq"]})
    seen += [d["sessionEvents"]["seq"] for d in await take(resumed, 50 - len(seen))]
    await resumed.aclose()
    assert seen == list(range(1, 51))


async def test_subscriptions_per_key_are_bounded(engine, org):
    session = await create(engine, org.alice)
    keyed = Viewer(org.alice.user_id, org.id, "USER", "USER", uuid.uuid4())
    with broker_limits(engine, Limits(per_key=2)):
        open_ = [await subscribe(engine, keyed, EVENTS, {"id": session["id"]}) for _ in range(2)]
        assert await refused(engine, keyed, UPDATES) == ["TOO_MANY_SUBSCRIPTIONS"]
        await append(engine, org.alice, session["id"], outputs(1))
        for stream in open_:
            await take(stream, 1)
            await stream.aclose()
        again = await subscribe(engine, keyed, UPDATES)  # closing gave the places back
        await again.aclose()


# -- sessionUpdates


async def test_session_updates_tell_the_owner_and_admin_but_not_another_user(engine, org, other_org):
    alices = await subscribe(engine, org.alice, UPDATES)
    admins = await subscribe(engine, org.admin, UPDATES)
    bobs = await subscribe(engine, org.bob, UPDATES)
    strangers = await subscribe(engine, other_org.admin, UPDATES)
    session = await create(engine, machine(org), userId=str(org.alice.user_id), title="Live")
    created = [d["sessionUpdates"] for stream in (alices, admins) for d in await take(stream, 1)]
    turn = await start(engine, org.alice, session["id"], "task-9")
    started = [d["sessionUpdates"] for stream in (alices, admins) for d in await take(stream, 1)]
    await complete(engine, org.alice, turn["id"], status="COMPLETED")
    completed = [d["sessionUpdates"] for stream in (alices, admins) for d in await take(stream, 1)]
    base = {"sessionId": session["id"], "session": {"title": "Live"}}
    assert created == [{**base, "kind": "CREATED", "session": {"title": "Live", "turnCount": 0}, "turn": None}] * 2
    assert started == [{**base, "kind": "TURN_STARTED", "session": {"title": "Live", "turnCount": 1},
                        "turn": {"taskId": "task-9", "status": "RUNNING"}}] * 2
    assert completed == [{**base, "kind": "TURN_COMPLETED", "session": {"title": "Live", "turnCount": 1},
                          "turn": {"taskId": "task-9", "status": "COMPLETED"}}] * 2
    # Bob and the other organisation's admin hear nothing of alice's session: the next
    # thing each gets is a change to a session of its own.
    await create(engine, org.bob, title="Bob's")
    await create(engine, other_org.admin, title="Theirs")
    [bob_update] = await take(bobs, 1)
    [stranger_update] = await take(strangers, 1)
    assert bob_update["sessionUpdates"]["session"]["title"] == "Bob's"
    assert stranger_update["sessionUpdates"]["session"]["title"] == "Theirs"
    for stream in (alices, admins, bobs, strangers):
        await stream.aclose()


async def test_a_deleted_session_is_announced_with_its_id_and_no_session(engine, org):
    # Subscribed before the session is created, so that what it gets is known: CREATED, then
    # DELETED. (On PostgreSQL a NOTIFY reaches the listener a little after its commit: the
    # CREATED of a session created just before subscribing may still reach the subscriber.)
    stream = await subscribe(engine, org.alice, UPDATES)
    session = await create(engine, org.alice)
    [created] = await take(stream, 1)  # before the delete: resolved while the session exists
    await delete_announced(engine, session)
    [got] = await take(stream, 1)
    await stream.aclose()
    assert (created["sessionUpdates"]["kind"], created["sessionUpdates"]["sessionId"]) == ("CREATED", session["id"])
    assert got["sessionUpdates"] == {"kind": "DELETED", "sessionId": session["id"], "session": None, "turn": None}


# -- over graphql-transport-ws


@contextlib.asynccontextmanager
async def serving(engine, socket_limits: SocketLimits | None = None, **settings):
    """The app on a free local port, in this process, under `settings` (the defaults for what
    is not given); yields the ws:// URL of /graphql."""
    app = create_app(Settings(database_url=str(engine.url), **settings), engine=engine, socket_limits=socket_limits)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/graphql"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT)


class Client:
    """A graphql-transport-ws client, just enough for the tests."""

    def __init__(self, socket) -> None:
        self.socket = socket

    @classmethod
    @contextlib.asynccontextmanager
    async def connected(cls, url: str, payload: dict | None = None, headers: dict | None = None):
        async with connect(url, subprotocols=["graphql-transport-ws"], additional_headers=headers) as socket:
            client = cls(socket)
            await client.send({"type": "connection_init", "payload": payload or {}})
            assert (await client.receive())["type"] == "connection_ack"
            yield client

    async def send(self, message: dict) -> None:
        await self.socket.send(json.dumps(message))

    async def receive(self) -> dict:
        return json.loads(await asyncio.wait_for(self.socket.recv(), WAIT))

    async def subscribe(self, id_: str, query: str, variables: dict | None = None) -> None:
        await self.send({"id": id_, "type": "subscribe", "payload": {"query": query, "variables": variables or {}}})


async def closed_with(url: str, messages: list[dict], headers: dict | None = None) -> int:
    async with connect(url, subprotocols=["graphql-transport-ws"], additional_headers=headers) as socket:
        for message in messages:
            await socket.send(json.dumps(message))
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(socket.recv(), WAIT)
        return socket.close_code


async def test_websocket_delivers_events_with_the_key_in_the_payload_or_the_headers(engine, org):
    key = await api_key(engine, org.alice)
    session = await create(engine, org.alice)
    async with serving(engine) as url:
        for payload, headers in (({"apiKey": key}, None), ({"X-API-Key": key}, None), (None, {"Authorization": f"Bearer {key}"})):
            async with Client.connected(url, payload, headers) as client:
                await client.subscribe("1", EVENTS, {"id": session["id"]})
                await asyncio.sleep(0.2)  # the subscribe is acted on before the append
                [event] = await append(engine, org.alice, session["id"], outputs(1))
                message = await client.receive()
                assert (message["id"], message["type"]) == ("1", "next")
                assert message["payload"]["data"] == {"sessionEvents": {
                    "seq": event["seq"], "type": "OUTPUT", "message": "0", "turn": None, "session": {"turnCount": 0}}}


async def test_websocket_refuses_a_bad_or_missing_key_with_4401(engine, org):
    async with serving(engine) as url:
        init = {"type": "connection_init", "payload": {"apiKey": "sg_not-a-key"}}
        assert await closed_with(url, [init]) == 4401
        assert await closed_with(url, [{"type": "connection_init", "payload": {}}]) == 4401
        subscribe_first = {"id": "1", "type": "subscribe", "payload": {"query": UPDATES}}
        assert await closed_with(url, [subscribe_first]) == 4401


async def test_websocket_without_connection_init_in_time_is_closed_with_4408(engine):
    async with serving(engine, SocketLimits(init_timeout_seconds=0.3)) as url:
        assert await closed_with(url, []) == 4408


async def test_websocket_errors_carry_codes(engine, org):
    key = await api_key(engine, org.alice)
    bobs = await create(engine, org.bob)
    async with serving(engine, SocketLimits(per_connection=1)) as url:
        async with Client.connected(url, {"apiKey": key}) as client:
            await client.subscribe("hidden", EVENTS, {"id": bobs["id"]})
            refused = await client.receive()
            assert (refused["type"], refused["payload"][0]["extensions"]["code"]) == ("error", "NOT_FOUND")
            await client.subscribe("one", UPDATES)
            await client.subscribe("two", UPDATES)
            limited = await client.receive()
            assert (limited["id"], limited["type"]) == ("two", "error")
            assert limited["payload"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"


async def test_websocket_queries_read_fresh_rows_each_time(engine, org):
    """The socket's context lives as long as the socket: each operation must still see what
    was written since the one before."""
    key = await api_key(engine, org.alice)
    session = await create(engine, org.alice)
    query = "query ($id: ID!) { session(id: $id) { title } }"
    rename = "mutation ($id: ID!, $t: String!) { renameSession(input: {id: $id, title: $t}) { session { title } } }"
    async with serving(engine) as url:
        async with Client.connected(url, {"apiKey": key}) as client:
            for n, title in enumerate(["first", "second"]):
                result = await execute(engine, org.alice, rename, {"id": session["id"], "t": title})
                assert result.errors is None
                await client.subscribe(f"q{n}", query, {"id": session["id"]})
                message = await client.receive()
                assert message["payload"]["data"] == {"session": {"title": title}}
                assert (await client.receive())["type"] == "complete"


async def test_websocket_subscriber_resumes_after_reconnecting_without_loss(engine, org):
    key = await api_key(engine, org.alice)
    session = await create(engine, org.alice)
    seen: list[int] = []
    async with serving(engine) as url:
        for round_ in range(3):
            async with Client.connected(url, {"apiKey": key}) as client:
                await client.subscribe("e", EVENTS, {"id": session["id"], "after": seen[-1] if seen else 0})
                await append(engine, org.alice, session["id"], outputs(40, f"{round_}-"))
                for _ in range(25):  # leaves while events are still coming
                    seen.append((await client.receive())["payload"]["data"]["sessionEvents"]["seq"])
        async with Client.connected(url, {"apiKey": key}) as client:
            await client.subscribe("e", EVENTS, {"id": session["id"], "after": seen[-1]})
            while len(seen) < 120:
                seen.append((await client.receive())["payload"]["data"]["sessionEvents"]["seq"])
    assert seen == list(range(1, 121))


# -- across processes

POSTGRESQL = BACKENDS[1]


# SQLite serves one process: delivery across processes is PostgreSQL's (LISTEN/NOTIFY), so
# this test runs on PostgreSQL only (and skips, saying why, where there is none).
@pytest.mark.parametrize("database_url", [POSTGRESQL], indirect=True)
async def test_an_event_written_through_one_process_reaches_a_subscriber_of_another(engine, org):
    from tests.live_server import live_server

    key = await api_key(engine, org.alice)
    session = await create(engine, org.alice)
    url = engine.url.render_as_string(hide_password=False)
    with live_server(url) as writer, live_server(url) as reader:
        ws_url = reader.url.replace("http://", "ws://")
        async with Client.connected(ws_url, {"apiKey": key}) as client:
            await client.subscribe("e", EVENTS, {"id": session["id"], "after": 0})
            await asyncio.sleep(0.3)
            import httpx

            async with httpx.AsyncClient(timeout=WAIT) as http:
                response = await http.post(writer.url, headers={"X-API-Key": key}, json={
                    "query": "mutation($input: AppendEventsInput!) { appendEvents(input: $input) { events { seq } } }",
                    "variables": {"input": {"sessionId": session["id"], "events": outputs(3, "via-writer-")}},
                })
                assert response.json()["data"]["appendEvents"]["events"] == [{"seq": 1}, {"seq": 2}, {"seq": 3}]
            got = [(await client.receive())["payload"]["data"]["sessionEvents"] for _ in range(3)]
    assert [(e["seq"], e["message"]) for e in got] == [(1, "via-writer-0"), (2, "via-writer-1"), (3, "via-writer-2")]
