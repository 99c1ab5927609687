"""asciicast both ways, held to asciinema's own code (PyPI `asciinema` 2.x): what `sessiongraph
export --format asciicast` writes is read by asciinema's parser, a recording written by
asciinema's writer (v2) or by the v3 spec is imported as a TERMINAL session; and
`sessiongraph export` writes the bytes of the download link, in every format."""

import os
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from asciinema import asciicast as asciinema_files
from asciinema.asciicast import v2 as asciinema_v2

from sessiongraph.downloads import signing
from sessiongraph.downloads.signing import Link
from sessiongraph.gate.auth import create_key
from sessiongraph.resolvers.context import Viewer
from tests.conftest import T0, event_, ok, store_terminal, turn_, store
from tests.live_server import app_client

TERMINAL_DETAILS = {"terminal_columns": 132, "terminal_rows": 43, "verb": "CONNECT"}


def sessiongraph(url: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "sessiongraph.cli", "--database-url", url, *args], capture_output=True, timeout=120
    )
    if ok:
        assert done.returncode == 0, done.stderr.decode()
    return done


def url_of(engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture(autouse=True)
def secret_read_anew():
    signing.forget_secrets()  # each test empties every table, the secret's included
    yield
    signing.forget_secrets()


async def terminal_session(engine, owner) -> uuid.UUID:
    return await store_terminal(
        engine,
        owner,
        events=[
            event_("INPUT", 0.01, "ls -la\r"),
            event_("OUTPUT", 0.02, "total 0\r\n\x1b[1;34m.\x1b[0m\r\n"),
            event_("NOTE", 0.03, "not a stream"),
            event_("ERROR", 0.5, b"bad \xff byte"),
            event_("OUTPUT", 0.25, "clock went back"),
        ],
        details=TERMINAL_DETAILS,
        title="ls on host",
    )


async def test_asciinemas_parser_reads_the_asciicast_export(engine, org):
    session_id = await terminal_session(engine, org.alice)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "out.cast")
        sessiongraph(url_of(engine), "export", str(session_id), "--format", "asciicast", "--output", path)
        with asciinema_files.open_from_url(path) as cast:
            header = cast.v2_header
            events = list(cast.events())
    assert header == {"version": 2, "width": 132, "height": 43, "timestamp": int(T0.timestamp()), "title": "ls on host"}
    assert events == [
        [0.6, "i", "ls -la\r"],
        [1.2, "o", "total 0\r\n\x1b[1;34m.\x1b[0m\r\n"],
        [30.0, "o", "bad \ufffd byte"],  # invalid UTF-8 replaced, as asciinema records it
        [30.0, "o", "clock went back"],  # times never go back in a recording
    ]


async def test_event_types_narrow_the_asciicast_streams(engine, org):
    session_id = await terminal_session(engine, org.alice)
    done = sessiongraph(url_of(engine), "export", str(session_id), "--format", "asciicast", "--event-types", "INPUT,NOTE")
    lines = done.stdout.splitlines()
    assert [orjson.loads(line) for line in lines[1:]] == [[0.6, "i", "ls -la\r"]]


@pytest.mark.parametrize("format", ["CSV", "JSON", "JSONL", "TEXT", "ASCIICAST"])
async def test_export_writes_the_bytes_of_the_download_link(engine, org, format):
    session_id = await store(
        engine, org.alice,
        events=[event_("OUTPUT", 0.5, "a,\"b\"\r\n"), event_("OUTPUT", 1, b"\x00\xff")],
        turns=[turn_("t1", 2, [event_("LLM_OUTPUT", 2.5, "4", agent="x", payload={"p": 1})])],
        title="Both ways",
    )
    key_id, _ = await create_key(engine, org.id, org.alice.user_id, "USER")
    token = signing.sign(await signing.deployment_secret(engine), Link(session_id, format, None, False, False, key_id, 2**42))
    async with app_client(engine) as client:
        linked = await client.get(f"/downloads/{token}")
    assert linked.status_code == 200
    exported = sessiongraph(url_of(engine), "export", str(session_id), "--format", format.lower()).stdout
    assert exported == linked.content and len(exported) >= 10


async def test_export_of_no_session_fails_and_writes_nothing(engine):
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "none.csv")
        done = sessiongraph(url_of(engine), "export", str(uuid.uuid4()), "--format", "csv", "--output", path, ok=False)
        assert done.returncode == 1 and b"no session" in done.stderr
        assert not os.path.exists(path)


SESSION = """query ($id: ID!) { session(id: $id) {
  kind status title createdAt endedAt
  terminal { verb columns rows resource { name type } }
  events(first: 100) { nodes { seq type message timestamp } } } }"""


def imported_id(done: subprocess.CompletedProcess) -> str:
    return done.stdout.decode().strip().splitlines()[-1].removeprefix("session: ")


async def test_a_v2_recording_written_by_asciinema_is_imported_as_a_terminal_session(engine, org):
    stamp = 1_700_000_000
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "demo.cast")
        with asciinema_v2.writer(path, {"timestamp": stamp, "title": "Recorded demo", "env": {"SHELL": "/bin/zsh"}}, width=100, height=30) as w:
            w.write_stdout(0.248848, "\x1b[1;31mHello \x1b[32mWorld!\x1b[0m\n")
            w.write_stdin(1.0, "exit\r")
            w.write_marker(1.5)
            w.write_resize(2.0, (90, 30))
            w.write_stdout(2.143733, "Bye!".encode())
        done = sessiongraph(url_of(engine), "import", "--format", "asciicast", path, "--org", str(org.id), "--user", str(org.alice.user_id))
    start = datetime.fromtimestamp(stamp, UTC)
    data = await ok(engine, org.alice, SESSION, {"id": imported_id(done)})
    assert data == {"session": {
        "kind": "TERMINAL", "status": "DONE", "title": "Recorded demo",
        "createdAt": "2023-11-14T22:13:20Z", "endedAt": "2023-11-14T22:13:22.143733Z",
        "terminal": {"verb": "CONNECT", "columns": 100, "rows": 30, "resource": {"name": "asciinema", "type": "custom"}},
        "events": {"nodes": [
            {"seq": 1, "type": "OUTPUT", "message": "\x1b[1;31mHello \x1b[32mWorld!\x1b[0m\n", "timestamp": (start + timedelta(seconds=0.248848)).isoformat().replace("+00:00", "Z")},
            {"seq": 2, "type": "INPUT", "message": "exit\r", "timestamp": "2023-11-14T22:13:21Z"},
            {"seq": 3, "type": "OUTPUT", "message": "Bye!", "timestamp": "2023-11-14T22:13:22.143733Z"},
        ]},
    }}


V3 = b"""{"version": 3, "term": {"cols": 80, "rows": 24, "type": "xterm-256color"}, "timestamp": 1504467315, "title": "Demo", "env": {"SHELL": "/bin/zsh"}}
# event stream follows the header
[0.248, "o", "\\u001b[1;31mHello \\u001b[32mWorld!\\u001b[0m\\n"]
[1.001, "o", "That was ok\\rThis is better."]
[3.500, "m", ""]
[0.143, "i", "q"]
# terminal window resized to 90 cols and 30 rows
[2.050, "r", "90x30"]
[1.541, "o", "Bye!"]
[0.887, "x", "0"]
"""


async def test_a_v3_recording_is_imported_with_its_intervals_added_up(engine, org):
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "v3.cast")
        with open(path, "wb") as f:
            f.write(V3)
        done = sessiongraph(
            url_of(engine), "import", "--format", "asciicast", path, "--org", str(org.id), "--user", str(org.alice.user_id),
            "--title", "Given title", "--resource", "laptop",
        )
    data = await ok(engine, org.alice, SESSION, {"id": imported_id(done)})
    start = datetime.fromtimestamp(1504467315, UTC)

    def at(seconds: float) -> str:
        return (start + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")

    assert data["session"]["title"] == "Given title"
    assert data["session"]["terminal"] == {"verb": "CONNECT", "columns": 80, "rows": 24, "resource": {"name": "laptop", "type": "custom"}}
    assert data["session"]["createdAt"] == at(0) and data["session"]["endedAt"] == at(9.37)
    assert [(e["type"], e["message"], e["timestamp"]) for e in data["session"]["events"]["nodes"]] == [
        ("OUTPUT", "\x1b[1;31mHello \x1b[32mWorld!\x1b[0m\n", at(0.248)),
        ("OUTPUT", "That was ok\rThis is better.", at(1.249)),
        ("INPUT", "q", at(4.892)),
        ("OUTPUT", "Bye!", at(8.483)),
    ]


async def test_a_recording_without_timestamp_is_created_at_the_files_modification_time(engine, org):
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "bare.cast")
        with open(path, "wb") as f:
            f.write(b'{"version": 2, "width": 80, "height": 24}\n[0.5, "o", "hi"]\n')
        os.utime(path, (1_600_000_000, 1_600_000_000))
        done = sessiongraph(url_of(engine), "import", "--format", "asciicast", path, "--org", str(org.id), "--user", str(org.alice.user_id))
    data = await ok(engine, org.alice, SESSION, {"id": imported_id(done)})
    assert data["session"]["createdAt"] == "2020-09-13T12:26:40Z" and data["session"]["title"] is None


async def test_an_exported_terminal_session_imports_back_as_the_same_streams(engine, org):
    """A TERMINAL session and an asciinema recording are the same kind of thing: exported as
    asciicast, then imported, its INPUT and OUTPUT come back at the same times."""
    session_id = await store_terminal(
        engine, org.alice,
        events=[event_("INPUT", 0.001, "echo hi\r"), event_("OUTPUT", 0.002, "hi\r\n"), event_("OUTPUT", 0.1234567, "done")],
        details=TERMINAL_DETAILS, title="Round trip",
    )
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "rt.cast")
        sessiongraph(url_of(engine), "export", str(session_id), "--format", "asciicast", "--output", path)
        done = sessiongraph(url_of(engine), "import", "--format", "asciicast", path, "--org", str(org.id), "--user", str(org.alice.user_id))
    original = await ok(engine, org.alice, SESSION, {"id": str(session_id)})
    again = await ok(engine, org.alice, SESSION, {"id": imported_id(done)})
    assert again["session"]["events"] == original["session"]["events"]
    assert again["session"]["terminal"]["columns"] == 132 and again["session"]["title"] == "Round trip"


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", b"empty"),
        (b'{"version": 1, "width": 80}\n', b"not an asciicast v2 or v3 header"),
        (b'{"version": 2, "width": 80, "height": 24}\n[0.5, "o"]\n', b"line 2"),
        (b'{"version": 3, "term": {"cols": 80, "rows": 24}}\n[-1, "o", "x"]\n', b"line 2"),
        (b'{"version": 2, "width": 80, "height": 24, "title": "' + b"t" * 100 + b'"}\n', b"title"),
    ],
)
async def test_a_broken_recording_is_refused_and_stores_nothing(engine, org, content, reason):
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "bad.cast")
        with open(path, "wb") as f:
            f.write(content)
        done = sessiongraph(
            url_of(engine), "import", "--format", "asciicast", path, "--org", str(org.id), "--user", str(org.alice.user_id), ok=False
        )
    assert done.returncode == 1 and reason in done.stderr, done.stderr
    data = await ok(engine, org.alice, "{ sessions { totalCount } }")
    assert data == {"sessions": {"totalCount": 0}}
