"""A download from its start to its last byte: links made (the `Session.download` field) and
opened (GET of the link: who may still read what it names), and the file streamed, for the
HTTP route and for `sessiongraph export` alike (the same bytes).

Opening a link, in order: not signed by this deployment, altered or expired -> `BadLink`
(403); its key revoked or gone, the session deleted or no longer visible to the key's owner
(resolvers/visibility.py) -> `Gone` (404)."""

import asyncio
import contextlib
import os
import time
import uuid
import weakref
from contextvars import ContextVar
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sessiongraph.downloads import formats, rows, signing
from sessiongraph.downloads.formats import ExportFormat, Options
from sessiongraph.downloads.signing import BadLink, Link
from sessiongraph.resolvers import rules
from sessiongraph.resolvers.context import Viewer
from sessiongraph.resolvers.rules import RuleBroken

__all__ = ["BadLink", "Gone", "Opened", "export_file", "make_link", "open_link"]

MAX_EXPIRY = rules.MAX_LINK_SECONDS
# Downloads a process streams at once, each holding a database connection while it runs;
# the others wait their turn, so that downloads never take every connection of the pool
# from the API's requests.
CONCURRENCY_ENV = "SESSIONGRAPH_DOWNLOAD_CONCURRENCY"
DEFAULT_CONCURRENCY = 8
# Seconds a client may leave the next part of a file untaken (it stopped reading) before the
# download is cut off: its connection and slot would otherwise be held for as long as the
# client likes, and a few such clients would stop every download of the process.
IDLE_ENV = "SESSIONGRAPH_DOWNLOAD_IDLE_SECONDS"
DEFAULT_IDLE_SECONDS = 30
PATH = "/downloads/"


class Gone(Exception):
    """What the link names is no longer there for its key: 404."""


def check_options(format: ExportFormat, event_types, event_time, newline, expires_in_seconds) -> Options:
    """The arguments of `Session.download`, by the input rules; RuleBroken (BAD_USER_INPUT)."""
    rules.check_link_expiry(expires_in_seconds)
    if event_types is not None:
        event_types = tuple(dict.fromkeys(rules.check_event_type(t) for t in event_types))
    return Options(format, event_types, bool(event_time), bool(newline))


async def make_link(engine, viewer: Viewer, session_id: uuid.UUID, options: Options, expires_in_seconds: int) -> tuple[str, Link]:
    """(the token, what it names) for a session `viewer` may see."""
    if viewer.key_id is None:
        raise RuleBroken("Download links are made for API keys; this caller has none.")
    link = Link(
        session_id=session_id,
        format=options.format.value,
        event_types=options.event_types,
        event_time=options.event_time,
        newline=options.newline,
        key_id=viewer.key_id,
        expires_ms=int(time.time() * 1000) + expires_in_seconds * 1000,
    )
    return signing.sign(await signing.deployment_secret(engine), link), link


@dataclass(frozen=True, slots=True)
class Opened:
    session: object  # its row
    options: Options

    @property
    def file_name(self) -> str:
        return formats.file_name(self.session.id, self.options.format)

    @property
    def media_type(self) -> str:
        return formats.media_type(self.options.format)


async def open_link(engine, connection, token: str) -> Opened:
    from sessiongraph.gate.auth import live_key_caller
    from sessiongraph.models import ApiKey
    from sessiongraph.resolvers.visibility import can_see

    link = signing.verify(await signing.deployment_secret(engine), token)
    viewer = await live_key_caller(connection, ApiKey.id == link.key_id)
    if viewer is None:
        raise Gone("the link's API key was revoked")
    session = await rows.session_row(connection, link.session_id)
    if not can_see(viewer, session):
        raise Gone("the session is gone, or no longer visible to the link's key")
    options = Options(ExportFormat(link.format), link.event_types, link.event_time, link.newline)
    return Opened(session, options)


def file_chunks(connection, opened: Opened) -> AsyncIterator[bytes]:
    return formats.write(connection, opened.session, opened.options)


# -- one download at a time per slot

_slots: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]" = weakref.WeakKeyDictionary()


def concurrency() -> int:
    return _positive(CONCURRENCY_ENV, DEFAULT_CONCURRENCY)


def idle_seconds() -> int:
    return _positive(IDLE_ENV, DEFAULT_IDLE_SECONDS)


def _positive(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw and raw.isdigit() and int(raw) > 0 else default


def _slot() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    found = _slots.get(loop)
    if found is None:
        found = _slots[loop] = asyncio.Semaphore(concurrency())
    return found


@contextlib.asynccontextmanager
async def download_connection(engine):
    """A connection for one download, once a slot is free; both given back at the end."""
    async with _slot():
        async with engine.connect() as connection:
            yield connection


# -- the command line


class NoSession(Exception):
    pass


async def export_file(engine, session_id: uuid.UUID, options: Options, out) -> int:
    """`sessiongraph export`: the file a link with these options downloads, written to the
    binary stream `out`; the bytes written. NoSession when there is none (or it was deleted)."""
    written = 0
    async with engine.connect() as connection:
        session = await rows.session_row(connection, session_id)
        if session is None or session.deleted_at is not None:
            raise NoSession(f"no session {session_id}")
        async for chunk in formats.write(connection, session, options):
            out.write(chunk)
            written += len(chunk)
    return written


# -- the link's address

# The HTTP (or WebSocket) request being served, set by the app for each one (transport/app.py):
# a link is an address on the server the caller reached, as the caller named it.
current_scope: ContextVar[dict | None] = ContextVar("current_scope", default=None)


BASE_URL_ENV = "SESSIONGRAPH_DOWNLOAD_BASE_URL"


def link_url(token: str) -> str:
    """The link's URL: under SESSIONGRAPH_DOWNLOAD_BASE_URL when the deployment sets it (the
    address its users reach it at, behind a proxy); else absolute on the server the request
    came to (its Host, scheme and root path); a path alone outside a request."""
    path = PATH + token
    if base := os.environ.get(BASE_URL_ENV):
        return base.rstrip("/") + path
    scope = current_scope.get()
    if scope is None:
        return path
    host = next((value.decode("latin-1") for name, value in scope.get("headers") or () if name == b"host"), None)
    if host is None:
        server = scope.get("server")
        if not server:
            return path
        host = f"{server[0]}:{server[1]}"
    scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme", "http"), scope.get("scheme", "http"))
    return f"{scheme}://{host}{scope.get('root_path', '')}{path}"


def export_command(args) -> int:
    """`sessiongraph export SESSION_ID --format F [--output FILE]` (cli/): the exit status."""
    import sys

    from sessiongraph.models import create_engine

    try:
        types = None if args.event_types is None else [t.strip() for t in args.event_types.split(",")]
        options = check_options(ExportFormat(args.format.upper()), types, args.event_time, args.newline, MAX_EXPIRY)
    except RuleBroken as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    async def run(out) -> None:
        engine = create_engine(args.url)
        try:
            await export_file(engine, args.session_id, options, out)
        finally:
            await engine.dispose()

    try:
        if args.output is None:
            asyncio.run(run(sys.stdout.buffer))
            sys.stdout.buffer.flush()
        else:
            with open(args.output, "wb") as out:
                asyncio.run(run(out))
    except NoSession as e:
        if args.output is not None:
            os.remove(args.output)
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
