"""A TCP relay in front of a database server, in this process's event loop, that can be
frozen (bytes held in both directions, as a stopped server's kernel would hold them: connects
still succeed) or cut (every connection dropped, new ones closed at once, as a restarting
server does), then restored. It makes the failures the outage tests need without stopping a
server others use."""

import asyncio
import contextlib


class Link:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.listen_port = 0
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._down = False
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> "Link":
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.listen_port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc) -> None:
        self.restore()
        self._close_all()
        self._server.close()
        await self._server.wait_closed()

    def freeze(self) -> None:
        """From now on nothing passes either way, until `restore`."""
        self._flowing.clear()

    def cut(self) -> None:
        """Drops every connection; new ones are closed as soon as they come, until `restore`."""
        self._down = True
        self._close_all()

    def restore(self) -> None:
        self._down = False
        self._flowing.set()

    def _close_all(self) -> None:
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()

    async def _accept(self, client_reader, client_writer) -> None:
        if self._down:
            client_writer.transport.abort()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers.update((client_writer, server_writer))
        await asyncio.gather(
            self._pump(client_reader, server_writer), self._pump(server_reader, client_writer), return_exceptions=True
        )
        for writer in (client_writer, server_writer):
            self._writers.discard(writer)
            writer.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            await self._flowing.wait()
            if writer.transport.is_closing():
                return
            writer.write(data)
            await writer.drain()
        writer.transport.abort()
