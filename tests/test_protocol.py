"""The HTTP protocol `sessiongraph serve` runs (sessiongraph/protocol.py): each response
written in one piece, and nothing held back, reordered or lost."""

import asyncio
import base64
import os
import socket

import orjson
from uvicorn.config import Config
from uvicorn.server import ServerState

from sessiongraph.transport.protocol import JOIN_AT_MOST, HeadersWithBody, OneWriteHttpToolsProtocol
from tests.live_server import key, live_server  # noqa: F401 (key: a fixture)


class Transport(asyncio.Transport):
    """Records what the protocol writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def hello(scope, receive, send) -> None:
    await receive()
    body = b"hello " + scope["path"].encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def served(request: bytes, responses: int, app=hello) -> Transport:
    config = Config(app=app, http=OneWriteHttpToolsProtocol, lifespan="off", log_level="warning")
    config.load()
    protocol = OneWriteHttpToolsProtocol(config, ServerState(), app_state={})
    transport = Transport()
    protocol.connection_made(transport)
    protocol.data_received(request)
    for _ in range(100):
        await asyncio.sleep(0)
        if b"".join(transport.writes).count(b"HTTP/1.1 ") >= responses and not protocol.tasks:
            break
    await asyncio.sleep(0)
    return transport


async def test_a_response_is_written_in_one_piece():
    transport = await served(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 1)
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[0].endswith(b"\r\ncontent-length: 8\r\n\r\nhello /a")


async def test_pipelined_requests_are_answered_in_order_a_write_each():
    request = b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n"
    transport = await served(request, 2)
    assert [w.rsplit(b"\r\n\r\n", 1)[1] for w in transport.writes] == [b"hello /one", b"hello /two"]


async def test_a_response_without_a_body_is_not_held_back():
    # HEAD: uvicorn writes the headers and no body, so nothing comes after the header block.
    transport = await served(b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n", 1)
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and transport.writes[0].endswith(b"\r\n\r\n")


async def test_a_streamed_body_goes_out_as_it_comes():
    async def streamed(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await send({"type": "http.response.body", "body": b"second", "more_body": False})

    transport = await served(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1, streamed)
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[0].endswith(b"transfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
    assert transport.writes[1:] == [b"6\r\nsecond\r\n0\r\n\r\n"]


def exchange(url: str, request: bytes, until: int) -> bytes:
    """Sends `request` on one connection; reads until `until` responses have begun and the last
    is complete (the socket times out rather than hang)."""
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request)
        received = b""
        while received.count(b"HTTP/1.1 ") < until or not received.endswith((b"ok", b"}", b"\r\n\r\n")):
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


async def test_the_server_answers_pipelined_posts_heads_and_gets(engine, key, database_url):
    body = orjson.dumps({"query": "{ viewer { userId } }"})
    post = (
        b"POST /graphql HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nAccept: application/json\r\n"
        b"X-API-Key: " + key.encode() + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    with live_server(database_url) as server:
        received = exchange(server.url, post + b"HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", 3)
        handshake = exchange(
            server.url,
            b"GET /graphql HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)) + b"\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n",
            1,
        )
        log = server.log()  # for the messages below
    first, second, third = received.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200 OK") and b'"userId"' in first, log
    assert second.startswith(b"200 OK") and second.endswith(b"\r\n\r\n"), log  # HEAD: headers only
    assert third.startswith(b"200 OK") and third.endswith(b"\r\n\r\nok"), log
    assert handshake.startswith(b"HTTP/1.1 101 "), log


def test_serve_runs_this_protocol(monkeypatch, tmp_path):
    import uvicorn
    from uvicorn.importer import import_from_string

    from sessiongraph.cli import main

    handed = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **settings: handed.update(settings))
    monkeypatch.setattr(os, "environ", os.environ.copy())  # serve sets variables for its workers
    assert main(["--database-url", f"sqlite+aiosqlite:///{tmp_path}/serve.db", "serve", "--port", "8999"]) == 0
    assert import_from_string(handed["http"]) is OneWriteHttpToolsProtocol


async def test_every_way_of_writing_keeps_the_order():
    transport = Transport()
    transport.write_eof = lambda: transport.writes.append(b"<eof>")
    held = HeadersWithBody(transport, asyncio.get_running_loop())
    held.write(b"HTTP/1.1 200 OK\r\n\r\n")
    held.writelines([b"a", b"b"])
    held.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    held.write_eof()
    held.write(b"HTTP/1.1 200 OK\r\n\r\n")
    held.close()
    held.write(b"late")  # after close: the transport's own behaviour
    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\nab", b"HTTP/1.1 204 No Content\r\n\r\n", b"<eof>", b"HTTP/1.1 200 OK\r\n\r\n", b"late"]
    assert transport.closed


async def test_a_large_body_follows_its_headers_without_being_copied():
    transport = Transport()
    held = HeadersWithBody(transport, asyncio.get_running_loop())
    body = b"x" * (JOIN_AT_MOST + 1)
    held.write(b"HTTP/1.1 200 OK\r\n\r\n")
    held.write(body)
    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\n", body]
