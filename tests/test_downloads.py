"""Downloads (export.graphql, the contract README's "Downloads"): `Session.download` makes a
link that is its own credential, valid on every server process of the deployment until it
expires or its key is revoked; GET of it streams the file in the format asked for, with the
contract's headers."""

import asyncio
import base64
import csv
import io
import tracemalloc
import uuid

import orjson
import pytest

from sessiongraph.downloads import signing
from sessiongraph.downloads.signing import Link
from sessiongraph.gate.auth import create_key, revoke_key
from sessiongraph.models import create_engine
from sessiongraph.transport.app import create_app
from sessiongraph.config import Settings
from tests.conftest import event_, store, store_terminal, turn_
from tests.live_server import app_client

DOWNLOAD = """query ($id: ID!, $format: ExportFormat!, $types: [String!], $time: Boolean, $newline: Boolean, $expires: Int) {
  session(id: $id) { download(format: $format, eventTypes: $types, eventTime: $time, newline: $newline, expiresInSeconds: $expires) { url expiresAt format } }
}"""

TRICKY = 'a,"quoted"\r\nnext line; ünïcode'
BINARY = b"\xff\xfe\x00\x01 raw \x1b[31m"


async def graphql(client, key: str, query: str, variables: dict | None = None) -> dict:
    response = await client.post("/graphql", json={"query": query, "variables": variables or {}}, headers={"X-API-Key": key})
    return response.json()


async def link(client, key: str, session_id, format: str = "CSV", **arguments) -> dict:
    variables = {"id": str(session_id), "format": format, **arguments}
    body = await graphql(client, key, DOWNLOAD, variables)
    assert "errors" not in body, body
    return body["data"]["session"]["download"]


def path_of(url: str) -> str:
    return url[url.index("/downloads/"):]


async def download(client, url: str):
    return await client.get(path_of(url))


async def stored_session(engine, owner):
    """An AGENT session with session-level events (text with quotes, commas and CRLF;
    binary; none), and a turn with events."""
    return await store(
        engine,
        owner,
        events=[
            event_("OUTPUT", 0.5, TRICKY),
            event_("OUTPUT", 1, BINARY),
            event_("ERROR", 1.5, None),
        ],
        turns=[turn_("task-1", 2, [event_("LLM_PROMPT", 2.25, "2+2?", agent="planner"), event_("LLM_OUTPUT", 2.5, "4", agent="planner")])],
        title="Download me",
    )


@pytest.fixture(autouse=True)
def secret_read_anew():
    """Each test empties every table, the deployment's secret included: read it afresh."""
    signing.forget_secrets()
    yield
    signing.forget_secrets()


@pytest.fixture
async def admin_key(engine, org) -> tuple[uuid.UUID, str]:
    return await create_key(engine, org.id, org.admin.user_id, "ADMIN")


async def test_csv_rows_survive_a_round_trip_through_pythons_csv_module(engine, org, client, admin_key):
    session_id = await stored_session(engine, org.alice)
    made = await link(client, admin_key[1], session_id, "CSV")
    assert made["format"] == "CSV" and made["url"].startswith("http://test/downloads/")
    response = await download(client, made["url"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == f'attachment; filename="{session_id}.csv"'
    assert response.content.count(b"\r\n") >= 6  # RFC 4180 line ends
    table = list(csv.reader(io.StringIO(response.content.decode(), newline="")))
    assert table[0] == ["seq", "timestamp", "elapsed_ms", "type", "turn", "agent_id", "message", "message_b64"]
    rows = table[1:]
    assert [r[0] for r in rows] == ["1", "2", "3", "4", "5"]
    assert [r[3] for r in rows] == ["OUTPUT", "OUTPUT", "ERROR", "LLM_PROMPT", "LLM_OUTPUT"]
    assert [r[4] for r in rows] == ["", "", "", "1", "1"]
    assert [r[5] for r in rows] == ["", "", "", "planner", "planner"]
    assert rows[0][1] == "2025-10-28T06:00:30.000000Z" and rows[0][2] == "30000.000"
    contents = [base64.b64decode(r[7]) if r[7] else r[6].encode() for r in rows]
    assert contents == [TRICKY.encode(), BINARY, b"", b"2+2?", b"4"]
    assert rows[1][6] == ""  # binary goes in message_b64 alone


async def test_every_format_has_its_media_type_and_file_name(engine, org, client, admin_key):
    session_id = await stored_session(engine, org.alice)
    expected = {
        "CSV": ("text/csv; charset=utf-8", "csv"),
        "JSON": ("application/json", "json"),
        "JSONL": ("application/x-ndjson", "jsonl"),
        "TEXT": ("text/plain", "txt"),
        "ASCIICAST": ("application/x-asciicast", "cast"),
    }
    for format, (media_type, extension) in expected.items():
        response = await download(client, (await link(client, admin_key[1], session_id, format))["url"])
        assert response.status_code == 200, format
        assert response.headers["content-type"].startswith(media_type), format
        assert response.headers["content-disposition"] == f'attachment; filename="{session_id}.{extension}"'


async def test_json_is_the_jsonl_line_as_one_indented_document(engine, org, client, admin_key):
    session_id = await stored_session(engine, org.alice)
    lines = (await download(client, (await link(client, admin_key[1], session_id, "JSONL"))["url"])).content
    document = (await download(client, (await link(client, admin_key[1], session_id, "JSON"))["url"])).content
    assert lines.count(b"\n") == 1 and lines.endswith(b"\n")
    assert document.count(b"\n") > 10  # indented
    parsed = orjson.loads(document)
    assert parsed == orjson.loads(lines)
    assert parsed["session_id"] == str(session_id) and parsed["title"] == "Download me"
    assert [e.get("message") for e in parsed["events"]] == [TRICKY, None, None]
    assert base64.b64decode(parsed["events"][1]["message_b64"]) == BINARY
    assert [t["task_id"] for t in parsed["turns"]] == ["task-1"]
    assert [e["message"] for e in parsed["turns"][0]["events"]] == ["2+2?", "4"]


async def test_text_with_event_time_newline_and_event_types(engine, org, client, admin_key):
    session_id = await stored_session(engine, org.alice)
    plain = await download(client, (await link(client, admin_key[1], session_id, "TEXT"))["url"])
    assert plain.content == TRICKY.encode() + BINARY + b"2+2?4"
    timed = await download(
        client, (await link(client, admin_key[1], session_id, "TEXT", types=["OUTPUT", "ERROR"], time=True, newline=True))["url"]
    )
    assert timed.content == b"30.000 " + TRICKY.encode() + b"\n60.000 " + BINARY + b"\n90.000 \n"


async def test_event_types_keep_only_those_types_in_csv(engine, org, client, admin_key):
    session_id = await stored_session(engine, org.alice)
    response = await download(client, (await link(client, admin_key[1], session_id, "CSV", types=["LLM_OUTPUT"]))["url"])
    rows = list(csv.reader(io.StringIO(response.text, newline="")))[1:]
    assert [(r[0], r[3], r[6]) for r in rows] == [("5", "LLM_OUTPUT", "4")]


async def test_a_link_made_by_one_process_is_served_by_another(engine, org, client, admin_key):
    session_id = await stored_session(engine, org.alice)
    made = await link(client, admin_key[1], session_id, "TEXT")
    # Another process: its own engine, app and (empty) cache of the secret.
    other_engine = create_engine(str(engine.url.render_as_string(hide_password=False)))
    try:
        async with app_client(other_engine) as other:
            response = await download(other, made["url"])
    finally:
        await other_engine.dispose()
    assert response.status_code == 200 and response.content.startswith(TRICKY.encode())


async def test_an_altered_link_is_403_and_so_is_one_signed_with_another_secret(engine, org, client, admin_key):
    session_id = await stored_session(engine, org.alice)
    url = (await link(client, admin_key[1], session_id, "CSV"))["url"]
    payload, signature = path_of(url).removeprefix("/downloads/").split(".")
    named = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    named["f"] = "JSONL"
    altered = base64.urlsafe_b64encode(orjson.dumps(named)).rstrip(b"=").decode()
    assert (await client.get(f"/downloads/{altered}.{signature}")).status_code == 403
    assert (await client.get(f"/downloads/{payload}.{signature[:-2]}xx")).status_code == 403
    assert (await client.get("/downloads/not-a-link")).status_code == 403
    foreign = Link(session_id, "CSV", None, False, False, admin_key[0], 2**42)
    assert (await client.get(f"/downloads/{signing.sign(signing.new_secret(), foreign)}")).status_code == 403


async def test_an_expired_link_is_403(engine, org, client, admin_key):
    session_id = await stored_session(engine, org.alice)
    made = await link(client, admin_key[1], session_id, "CSV", expires=1)
    assert (await download(client, made["url"])).status_code == 200
    await asyncio.sleep(1.05)
    assert (await download(client, made["url"])).status_code == 403


async def test_expires_at_is_the_expiry_asked_for(engine, org, client, admin_key):
    session_id = await stored_session(engine, org.alice)
    body = await graphql(client, admin_key[1], "{ viewer { userId } }")
    assert "errors" not in body
    made = await link(client, admin_key[1], session_id, "CSV", expires=3600)
    from datetime import UTC, datetime

    left = (datetime.fromisoformat(made["expiresAt"]) - datetime.now(UTC)).total_seconds()
    assert 3590 < left <= 3600


async def test_a_deleted_session_is_404(engine, org, client, admin_key):
    session_id = await stored_session(engine, org.alice)
    made = await link(client, admin_key[1], session_id, "CSV")
    deleted = await graphql(client, admin_key[1], 'mutation ($id: ID!) { deleteSession(input: {id: $id}) { deletedSessionId } }', {"id": str(session_id)})
    assert "errors" not in deleted
    response = await download(client, made["url"])
    assert response.status_code == 404


async def test_a_revoked_key_is_404(engine, org, client, admin_key):
    session_id = await stored_session(engine, org.alice)
    made = await link(client, admin_key[1], session_id, "CSV")
    assert await revoke_key(engine, admin_key[0])
    assert (await download(client, made["url"])).status_code == 404


async def test_a_session_the_keys_owner_cannot_see_is_404(engine, org, other_org, client):
    """The visibility rules (resolvers/visibility.py) hold for links too: a link that named a
    session its key's owner cannot see (made with the deployment's secret) finds nothing."""
    bobs = await stored_session(engine, org.bob)
    strangers = await stored_session(engine, other_org.alice)
    alice_key_id, _ = await create_key(engine, org.id, org.alice.user_id, "USER")
    secret = await signing.deployment_secret(engine)
    for session_id in (bobs, strangers, uuid.uuid4()):
        token = signing.sign(secret, Link(session_id, "CSV", None, False, False, alice_key_id, 2**42))
        assert (await client.get(f"/downloads/{token}")).status_code == 404


async def test_a_user_cannot_make_a_link_to_a_session_it_cannot_see(engine, org, client):
    bobs = await stored_session(engine, org.bob)
    _, alice = await create_key(engine, org.id, org.alice.user_id, "USER")
    body = await graphql(client, alice, DOWNLOAD, {"id": str(bobs), "format": "CSV"})
    assert body["data"] == {"session": None} and "errors" not in body


@pytest.mark.parametrize(
    "arguments",
    [{"expires": 0}, {"expires": 3601}, {"expires": -5}, {"expires": None}, {"types": [""]}, {"types": ["x" * 65]}, {"types": ["OUT\nPUT"]}],
)
async def test_out_of_range_arguments_are_bad_user_input(engine, org, client, admin_key, arguments):
    session_id = await stored_session(engine, org.alice)
    body = await graphql(client, admin_key[1], DOWNLOAD, {"id": str(session_id), "format": "CSV", **arguments})
    assert body["data"] is None or body["data"]["session"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]


async def test_the_response_is_streamed_in_chunks(engine, org, admin_key):
    """The body leaves in several ASGI messages, the first long before the last row is read."""
    events = [event_("OUTPUT", i / 1000, f"line {i}\n" * 4) for i in range(9000)]
    session_id = await store_terminal(engine, org.alice, events=events)
    app = create_app(Settings(database_url=str(engine.url)), engine=engine)
    import httpx

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        made = await link(http, admin_key[1], session_id, "CSV")
    messages = []

    async def receive():
        await asyncio.sleep(3600)  # the client never goes away

    async def send(message):
        messages.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": path_of(made["url"]), "raw_path": path_of(made["url"]).encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"test")], "client": ("127.0.0.1", 1), "server": ("test", 80),
    }
    await app(scope, receive, send)
    bodies = [m for m in messages if m["type"] == "http.response.body"]
    assert messages[0]["status"] == 200
    assert b"content-length" not in dict(messages[0]["headers"])
    assert len([b for b in bodies if b["body"]]) >= 4
    assert bodies[-1].get("more_body", False) is False
    assert sum(len(b["body"]) for b in bodies) > 9000 * 4 * 7


async def test_a_client_that_stops_reading_is_cut_off_and_gives_its_slot_back(engine, org, admin_key, monkeypatch, caplog):
    """A client that takes the status line and then nothing more (the server's `send` waits
    for it, as uvicorn's does once the socket's buffers are full) holds the download's
    connection and slot only for the idle time; with one slot, the next download runs."""
    monkeypatch.setenv("SESSIONGRAPH_DOWNLOAD_IDLE_SECONDS", "1")
    monkeypatch.setenv("SESSIONGRAPH_DOWNLOAD_CONCURRENCY", "1")
    session_id = await store_terminal(engine, org.alice, events=[event_("OUTPUT", i / 1000, f"line {i}") for i in range(3000)])
    app = create_app(Settings(database_url=str(engine.url)), engine=engine)
    import httpx

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        made = await link(http, admin_key[1], session_id, "TEXT")
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": path_of(made["url"]), "raw_path": path_of(made["url"]).encode(), "query_string": b"", "root_path": "",
            "headers": [(b"host", b"test")], "client": ("127.0.0.1", 1), "server": ("test", 80),
        }  # fmt: skip
        taken = []

        async def receive():
            await asyncio.sleep(3600)  # the client never goes away

        async def send(message):
            if message["type"] == "http.response.body":
                await asyncio.sleep(3600)  # ... and never reads
            taken.append(message)

        await asyncio.wait_for(app(scope, receive, send), 15)  # cut off after 1 s
        assert taken[0]["status"] == 200 and len(taken) == 1
        assert "download cut off" in caplog.text
        second = await asyncio.wait_for(download(http, made["url"]), 15)  # the one slot is free again
        assert second.status_code == 200
        assert second.text.count("line ") == 3000


async def test_a_large_export_is_written_in_the_memory_of_a_batch(engine, org):
    """The Python memory an export allocates does not grow with the session: its peak over
    60,000 events (about 9 MB of CSV) is that of its first few batches."""
    from sessiongraph.downloads.export import file_chunks, open_link

    events = [event_("OUTPUT", i / 1000, f"{i:08d} " + "x" * 80) for i in range(60_000)]
    session_id = await store_terminal(engine, org.alice, events=events)
    key_id, _ = await create_key(engine, org.id, org.alice.user_id, "USER")
    token = signing.sign(await signing.deployment_secret(engine), Link(session_id, "CSV", None, False, False, key_id, 2**42))
    size, chunks, early_peak = 0, 0, None
    async with engine.connect() as connection:
        opened = await open_link(engine, connection, token)
        tracemalloc.start()
        try:
            async for chunk in file_chunks(connection, opened):
                size += len(chunk)
                chunks += 1
                if chunks == 4:
                    early_peak = tracemalloc.get_traced_memory()[1]
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert size > 8_000_000 and chunks > 20
    assert peak < early_peak * 1.5, f"peak {peak} bytes after the first 4 chunks' {early_peak}"
    assert peak < size / 2


async def test_links_are_made_on_the_deployments_public_address_when_it_is_set(engine, org, client, admin_key, monkeypatch):
    session_id = await stored_session(engine, org.alice)
    monkeypatch.setenv("SESSIONGRAPH_DOWNLOAD_BASE_URL", "https://sessions.example.com/api/")
    made = await link(client, admin_key[1], session_id, "CSV")
    assert made["url"].startswith("https://sessions.example.com/api/downloads/")
    assert (await download(client, made["url"])).status_code == 200


async def test_the_deployments_own_secret_signs_the_links(engine, org, client, admin_key, monkeypatch):
    """SESSIONGRAPH_DOWNLOAD_SECRET: links signed with it, refused under another."""
    session_id = await stored_session(engine, org.alice)
    monkeypatch.setenv("SESSIONGRAPH_DOWNLOAD_SECRET", "a" * 40)
    made = await link(client, admin_key[1], session_id, "CSV")
    assert (await download(client, made["url"])).status_code == 200
    monkeypatch.setenv("SESSIONGRAPH_DOWNLOAD_SECRET", "b" * 40)
    assert (await download(client, made["url"])).status_code == 403
    monkeypatch.delenv("SESSIONGRAPH_DOWNLOAD_SECRET")
    assert (await download(client, made["url"])).status_code == 403


async def test_no_event_types_keeps_no_events(engine, org, client, admin_key):
    session_id = await stored_session(engine, org.alice)
    text = await download(client, (await link(client, admin_key[1], session_id, "TEXT", types=[]))["url"])
    assert text.status_code == 200 and text.content == b""
    cast = await download(client, (await link(client, admin_key[1], session_id, "ASCIICAST", types=[]))["url"])
    assert cast.content.count(b"\n") == 1 and orjson.loads(cast.content)["version"] == 2


async def test_a_link_from_the_session_list_selecting_nothing_else(engine, org, client, admin_key):
    """The planner fetches the columns a document reads: a list page asking only for links
    still makes them for the right sessions."""
    first = await stored_session(engine, org.alice)
    body = await graphql(client, admin_key[1], "{ sessions(first: 5) { nodes { download(format: TEXT) { url } } } }")
    assert "errors" not in body, body
    [node] = body["data"]["sessions"]["nodes"]
    response = await download(client, node["download"]["url"])
    assert response.status_code == 200 and response.headers["content-disposition"].endswith(f'"{first}.txt"')
