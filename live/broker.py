"""The pub/sub broker: what writers announce (events appended, sessions changed) reaches the
subscribers of every server process.

On PostgreSQL a notice is a NOTIFY sent inside the writer's transaction: it is delivered
when, and only if, the transaction commits, in commit order, to every process LISTENing on
the database, this one included. On SQLite (one process: `serve --workers 2` is refused, see
`processes_refused`) it is handed to this process's broker after the commit. A notice carries ids and seqs, never content: each process reads
the new events once, however many of its subscribers watch the session, and fans them out.

Every subscriber has a bounded queue. Fanning out never waits: a subscriber whose queue is
full is ended (`Subscriber.failure`), so a slow one never holds up writers or the others;
it resumes with `afterSeq`.

For other writers (renameSession, deleteSession, updateSession, endSession): do the write
inside `publishing(engine)` and `announce(session_changed("RENAMED" | "DELETED" | "UPDATED" |
"ENDED", row))`; a DELETED notice also ends the
session's `sessionEvents` streams.
"""

import asyncio
import contextlib
import logging
import uuid
import weakref
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sessiongraph.models import Event
from sessiongraph.models.recording import write_transaction
from sessiongraph.resolvers.context import Viewer
from sessiongraph.resolvers.errors import CodedError
from sessiongraph.resolvers.visibility import may_see_owner
from sessiongraph.loaders import EVENT_COLUMNS, EVENTS_WITH_SESSION

log = logging.getLogger("sessiongraph.broker")

CHANNEL = "sessiongraph"
EVENTS = "EVENTS"
UPDATE_KINDS = ("CREATED", "RENAMED", "DELETED", "TURN_STARTED", "TURN_COMPLETED", "UPDATED", "ENDED")


class TooManySubscriptions(CodedError):
    code = "TOO_MANY_SUBSCRIPTIONS"


@dataclass(frozen=True, slots=True)
class Limits:
    # Events (or updates) a subscriber may have waiting: ten full appendEvents calls.
    queue: int = 10_000
    # Open subscriptions per API key, in one server process.
    per_key: int = 100


@dataclass(frozen=True, slots=True)
class Notice:
    """EVENTS: seqs `first_seq`..`last_seq` were appended to the session; else one of
    UPDATE_KINDS, with the turn for TURN_STARTED and TURN_COMPLETED."""

    kind: str
    session_id: uuid.UUID
    org_id: uuid.UUID
    user_id: uuid.UUID
    first_seq: int = 0
    last_seq: int = 0
    turn_id: int | None = None

    def encode(self) -> str:
        return orjson.dumps([
            self.kind, self.session_id.hex, self.org_id.hex, self.user_id.hex,
            self.first_seq, self.last_seq, self.turn_id,
        ]).decode()

    @classmethod
    def decode(cls, text: str) -> "Notice":
        kind, session_id, org_id, user_id, first_seq, last_seq, turn_id = orjson.loads(text)
        return cls(kind, uuid.UUID(session_id), uuid.UUID(org_id), uuid.UUID(user_id), first_seq, last_seq, turn_id)


def session_changed(kind: str, session, turn_id: int | None = None) -> Notice:
    """A notice of a change to `session` (a sessions row): one of UPDATE_KINDS."""
    assert kind in UPDATE_KINDS, kind
    return Notice(kind, session.id, session.org_id, session.user_id, turn_id=turn_id)


def events_appended(session, first_seq: int, last_seq: int) -> Notice:
    return Notice(EVENTS, session.id, session.org_id, session.user_id, first_seq, last_seq)


class Publication:
    """The notices of one write transaction."""

    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection
        self.notices: list[Notice] = []

    def announce(self, notice: Notice) -> None:
        self.notices.append(notice)


_NOTIFY_ALL = text("SELECT pg_notify(:channel, notice) FROM unnest(CAST(:notices AS text[])) AS notice")


@contextlib.asynccontextmanager
async def publishing(engine: AsyncEngine) -> AsyncIterator[Publication]:
    """A write transaction (`write_transaction`) whose announced notices reach subscribers
    once it commits, and never when it fails."""
    async with write_transaction(engine) as connection:
        publication = Publication(connection)
        yield publication
        if connection.dialect.name == "postgresql" and publication.notices:
            # One statement for all of them (an ingest request announces hundreds): the
            # function scan reads the array in its order, so they are sent in that order.
            await connection.execute(_NOTIFY_ALL, {"channel": CHANNEL, "notices": [n.encode() for n in publication.notices]})
    if engine.dialect.name != "postgresql":
        broker = broker_for(engine)
        for notice in publication.notices:
            broker.receive(notice)


class Subscriber:
    """One subscription's waiting items (event rows or notices), at most `limit` of them.
    `next()` returns them in order, then None once the subscription is ended; `failure`
    then says why when it was not a normal end (the session deleted)."""

    def __init__(self, broker: "Broker", viewer: Viewer, session_id: uuid.UUID | None, limit: int) -> None:
        self.broker, self.viewer, self.session_id, self.limit = broker, viewer, session_id, limit
        self.items: deque = deque()
        self.ended = False
        self.failure: str | None = None
        self._wake = asyncio.Event()

    def offer(self, item) -> None:
        if self.ended:
            return
        if len(self.items) >= self.limit:
            self.end("TOO_FAR_BEHIND")
            return
        self.items.append(item)
        self._wake.set()

    def end(self, failure: str | None = None) -> None:
        if not self.ended:
            self.ended, self.failure = True, failure
            self._wake.set()
            self.broker.forget(self)

    async def next(self):
        while not self.items:
            if self.ended:
                return None
            self._wake.clear()
            await self._wake.wait()
        return self.items.popleft()

    def close(self) -> None:
        self.end()


class Broker:
    """This process's side of the pub/sub: the subscribers, and on PostgreSQL the LISTEN
    connection. Started on first use; one per engine (`broker_for`)."""

    def __init__(self, engine: AsyncEngine, limits: Limits | None = None) -> None:
        self.engine = engine
        self.limits = limits or Limits()
        self.session_subscribers: dict[uuid.UUID, set[Subscriber]] = {}
        self.update_subscribers: set[Subscriber] = set()
        self.per_key: Counter = Counter()
        self._keys: dict[Subscriber, uuid.UUID] = {}
        self._inbox: asyncio.Queue[Notice] = asyncio.Queue()
        self._dispatcher: asyncio.Task | None = None
        self._listener: AsyncConnection | None = None
        self._starting = asyncio.Lock()

    # -- subscribing

    async def subscribe_events(self, viewer: Viewer, session_id: uuid.UUID) -> Subscriber:
        """A subscriber that receives, from now on, every event row appended to the session."""
        subscriber = await self._subscribe(viewer, session_id)
        self.session_subscribers.setdefault(session_id, set()).add(subscriber)
        return subscriber

    async def subscribe_updates(self, viewer: Viewer) -> Subscriber:
        """A subscriber that receives, from now on, the notices of changes to the sessions
        `viewer` may see."""
        subscriber = await self._subscribe(viewer, None)
        self.update_subscribers.add(subscriber)
        return subscriber

    async def _subscribe(self, viewer: Viewer, session_id: uuid.UUID | None) -> Subscriber:
        key = viewer.key_id
        if key is not None and self.per_key[key] >= self.limits.per_key:
            raise TooManySubscriptions(
                f"This API key has {self.per_key[key]} subscriptions open, the most allowed."
            )
        await self.start()
        subscriber = Subscriber(self, viewer, session_id, self.limits.queue)
        if key is not None:
            self.per_key[key] += 1
            self._keys[subscriber] = key
        return subscriber

    def forget(self, subscriber: Subscriber) -> None:
        if subscriber.session_id is not None:
            watchers = self.session_subscribers.get(subscriber.session_id)
            if watchers is not None:
                watchers.discard(subscriber)
                if not watchers:
                    del self.session_subscribers[subscriber.session_id]
        else:
            self.update_subscribers.discard(subscriber)
        if (key := self._keys.pop(subscriber, None)) is not None:
            self.per_key[key] -= 1
            if not self.per_key[key]:
                del self.per_key[key]

    # -- receiving

    def receive(self, notice: Notice) -> None:
        if self._dispatcher is not None:  # else nobody in this process has subscribed yet
            self._inbox.put_nowait(notice)

    async def start(self) -> None:
        """Starts the dispatcher and, on PostgreSQL, LISTENs; returns once notices committed
        from now on are sure to arrive."""
        if self._dispatcher is not None and (self._listener is not None or self.engine.dialect.name != "postgresql"):
            return
        async with self._starting:
            if self._dispatcher is None:
                self._dispatcher = asyncio.create_task(self._dispatch(), name="sessiongraph-broker")
            if self.engine.dialect.name == "postgresql" and self._listener is None:
                connection = await self.engine.connect()
                driver = (await connection.get_raw_connection()).driver_connection
                await driver.add_listener(CHANNEL, self._on_notify)
                driver.add_termination_listener(self._on_listener_lost)
                self._listener = connection

    def _on_notify(self, _connection, _pid, _channel, payload: str) -> None:
        try:
            self.receive(Notice.decode(payload))
        except (ValueError, TypeError):
            log.error("ignored a malformed notice %r", payload)

    def _on_listener_lost(self, _connection) -> None:
        # Notices sent while nobody listens are lost: end every subscriber (each resumes
        # with afterSeq, which reads what it missed from the database); the next
        # subscription listens again.
        log.warning("the LISTEN connection was lost; ending %d subscriptions", self.count())
        self._listener = None
        for subscriber in self.subscribers():
            subscriber.end("LIVE_FEED_LOST")

    def subscribers(self) -> list[Subscriber]:
        return [*self.update_subscribers, *(s for group in self.session_subscribers.values() for s in group)]

    def count(self) -> int:
        return len(self.update_subscribers) + sum(map(len, self.session_subscribers.values()))

    async def _dispatch(self) -> None:
        while True:
            batch = [await self._inbox.get()]
            while not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            try:
                await self._fan_out(batch)
            except Exception:  # a failed read must not stop the broker: end who missed it
                log.exception("fanning out %d notices failed", len(batch))
                for notice in batch:
                    for subscriber in list(self.session_subscribers.get(notice.session_id, ())):
                        subscriber.end("LIVE_FEED_LOST")

    async def _fan_out(self, batch: list[Notice]) -> None:
        # A session's EVENTS notices arrive in seq order (seqs are taken under the session
        # row's lock, so commits come in seq order): their ranges join into one read.
        ranges: dict[uuid.UUID, list[int]] = {}
        for notice in batch:
            if notice.kind == EVENTS and notice.session_id in self.session_subscribers:
                seqs = ranges.setdefault(notice.session_id, [notice.first_seq, notice.last_seq])
                seqs[0], seqs[1] = min(seqs[0], notice.first_seq), max(seqs[1], notice.last_seq)
        for session_id, (first, last) in ranges.items():
            async with self.engine.connect() as connection:
                rows = (await connection.execute(
                    select(*EVENT_COLUMNS)
                    .select_from(EVENTS_WITH_SESSION)
                    .where(Event.session_id == session_id, Event.seq.between(first, last))
                    .order_by(Event.seq)
                )).all()
            for subscriber in list(self.session_subscribers.get(session_id, ())):
                for row in rows:
                    subscriber.offer(row)
        for notice in batch:
            if notice.kind == EVENTS:
                continue
            for subscriber in list(self.update_subscribers):
                if may_see_owner(subscriber.viewer, notice.org_id, notice.user_id):
                    subscriber.offer(notice)
            if notice.kind == "DELETED":
                for subscriber in list(self.session_subscribers.get(notice.session_id, ())):
                    subscriber.end()

    async def close(self) -> None:
        for subscriber in self.subscribers():
            subscriber.end("SHUTTING_DOWN")
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
            self._dispatcher = None
        if self._listener is not None:
            listener, self._listener = self._listener, None
            with contextlib.suppress(Exception):  # the connection may be gone already
                driver = (await listener.get_raw_connection()).driver_connection
                driver.remove_termination_listener(self._on_listener_lost)
                await driver.remove_listener(CHANNEL, self._on_notify)
            await listener.close()


def processes_refused(backend: str, workers: int) -> str | None:
    """Why `workers` server processes cannot serve a `backend` database; None when they can.
    On SQLite a notice reaches only the broker of the process that wrote it: a subscriber
    would see only what its own worker wrote. Several processes are refused rather than
    given a second broker that polls the database for others' commits: SQLite takes one
    writer at a time across processes, so extra workers add no write capacity, and
    PostgreSQL (LISTEN/NOTIFY) is the database for several processes."""
    if backend == "sqlite" and workers > 1:
        return (
            f"--workers {workers} on SQLite: live subscriptions (sessionEvents, sessionUpdates) are "
            "delivered within one process, so a subscriber would miss what other workers write. "
            "Serve SQLite with --workers 1, or use PostgreSQL (SESSIONGRAPH_DATABASE_URL="
            "postgresql+asyncpg://...) for several workers."
        )
    return None


_BROKERS: "weakref.WeakKeyDictionary[AsyncEngine, Broker]" = weakref.WeakKeyDictionary()


def broker_for(engine: AsyncEngine) -> Broker:
    """The broker of `engine`'s database in this process."""
    broker = _BROKERS.get(engine)
    if broker is None:
        broker = _BROKERS[engine] = Broker(engine)
    return broker
