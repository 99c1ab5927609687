"""uvicorn's httptools protocol, writing each response in one piece.

uvicorn writes a response's status line and headers with one `transport.write` and its body
with another: two `send()` system calls a response, the largest single cost of a small
query under load (a bare ASGI app: 34,500 req/s with two writes, 38,000 with one, here).
`HttpToolsProtocol` takes its transport in `connection_made`; this protocol hands it one
that holds a header block back until the next write, which is the body in the same step of
the loop, and writes the two as one (a body of up to 64 KB; a larger one follows its
headers in a call of its own rather than be copied). A held block is never reordered: it
goes out before any later write, before the connection is closed or handed to a WebSocket
protocol, and at the latest in the loop's next iteration (a response with no body: HEAD,
204, 304). `sessiongraph serve` selects it through uvicorn's `http=` setting, which takes a
protocol class."""

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


# Bodies up to this size are copied behind their headers to be written with them.
JOIN_AT_MOST = 64 * 1024


class HeadersWithBody:
    """A transport that writes a header block together with the write after it."""

    __slots__ = ("transport", "_held", "_loop")

    def __init__(self, transport, loop) -> None:
        self.transport, self._loop = transport, loop
        self._held: bytes | None = None

    def write(self, data) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            if len(data) > JOIN_AT_MOST:  # a second call costs less than copying a large body
                self.transport.write(held)
                self.transport.write(data)
            else:
                self.transport.write(held + data)
        elif data[:9] == b"HTTP/1.1 " and data[-4:] == b"\r\n\r\n":
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
        else:
            self.transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            data, self._held = self._held, None
            if not self.transport.is_closing():
                self.transport.write(data)

    def writelines(self, chunks) -> None:
        self.write(b"".join(chunks))

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def set_protocol(self, protocol) -> None:
        self.flush()
        self.transport.set_protocol(protocol)

    def __getattr__(self, name):  # everything else is the transport's own
        return getattr(self.transport, name)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport) -> None:
        super().connection_made(HeadersWithBody(transport, self.loop))

    def handle_websocket_upgrade(self) -> None:
        # The WebSocket protocol takes the connection's own transport.
        self.transport.flush()
        self.transport = self.transport.transport
        super().handle_websocket_upgrade()
