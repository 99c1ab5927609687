"""Graceful shutdown of a server process, on top of uvicorn's own: at SIGTERM (or SIGINT)
every open WebSocket is closed with 1001 (going away; uvicorn would say 1012) and no new one
is accepted, while uvicorn stops accepting connections and lets the HTTP requests in flight
finish, for up to `--shutdown-grace` seconds."""

import asyncio
import contextlib
import logging
import signal

log = logging.getLogger("sessiongraph.shutdown")

GOING_AWAY = 1001


class Connection:
    """One WebSocket: its `send`, guarded so that nothing follows the close."""

    __slots__ = ("send", "closed")

    def __init__(self, send) -> None:
        self.send, self.closed = send, False

    async def guarded_send(self, message: dict) -> None:
        if self.closed:
            return
        if message["type"] == "websocket.close":
            self.closed = True
        await self.send(message)

    async def go_away(self) -> None:
        await self.guarded_send({"type": "websocket.close", "code": GOING_AWAY, "reason": "server shutting down"})


class ClosableWebSockets:
    """Wraps the WebSocket endpoint: keeps the open connections, so that `go_away` can close
    them all with 1001. The endpoint then reads a disconnect and ends its operations."""

    def __init__(self, app) -> None:
        self.app = app
        self.open: dict[Connection, asyncio.Event] = {}
        self.going = False

    async def __call__(self, scope, receive, send) -> None:
        connection, gone = Connection(send), asyncio.Event()
        if self.going:
            await connection.go_away()
            return

        async def receive_until_gone():
            if gone.is_set():
                return {"type": "websocket.disconnect", "code": GOING_AWAY}
            message, waiter = asyncio.ensure_future(receive()), asyncio.ensure_future(gone.wait())
            await asyncio.wait((message, waiter), return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if message.done():
                return message.result()
            message.cancel()
            return {"type": "websocket.disconnect", "code": GOING_AWAY}

        self.open[connection] = gone
        try:
            await self.app(scope, receive_until_gone, connection.guarded_send)
        finally:
            del self.open[connection]

    async def go_away(self) -> None:
        self.going = True
        connections = list(self.open.items())
        if connections:
            log.info("closing %d WebSocket connection(s) with %d", len(connections), GOING_AWAY)
        for connection, gone in connections:
            gone.set()
            with contextlib.suppress(Exception):  # a connection that broke meanwhile is closed already
                await connection.go_away()


def on_stop_signals(callback) -> None:
    """Calls `callback` on the running loop at SIGTERM/SIGINT, then passes the signal on to
    the handler installed before (uvicorn's, which starts its shutdown). Called from the app's
    start-up, after uvicorn installed its handlers; a no-op outside the main thread."""
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(number)

        def handler(signum, frame, previous=previous):
            loop.call_soon_threadsafe(callback, signum)
            if callable(previous):
                previous(signum, frame)

        try:
            signal.signal(number, handler)
        except ValueError:  # not the main thread (an app run by a test client): no signals to take
            return
