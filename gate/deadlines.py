"""The time limit of running operations (`--request-timeout`), one timer for all of them, and
what a request past it gives up: its task is cancelled and the database connections it holds
are cut, so that ending it never waits for a database that does not answer."""

import asyncio
import contextvars

from sqlalchemy import event

# The pool entries checked out by the request running in this context (and by the tasks it
# starts, which copy the context: a shielded statement's). None outside a timed request.
_held: contextvars.ContextVar[set | None] = contextvars.ContextVar("sessiongraph_held_connections", default=None)
HOLDER = "sessiongraph_holder"  # the key of a checked-out pool entry's `info`: its holder's set


def _checked_out(_dbapi_connection, entry, _proxy) -> None:
    held = _held.get()
    if held is not None:
        held.add(entry)
        entry.info[HOLDER] = held


def _checked_in(_dbapi_connection, entry) -> None:
    held = entry.info.pop(HOLDER, None)
    if held is not None:
        held.discard(entry)


def track_connections(engine) -> None:
    """Records which timed request holds each of `engine`'s pool connections (pool events)."""
    target = engine.sync_engine
    if not event.contains(target, "checkout", _checked_out):
        event.listen(target, "checkout", _checked_out)
        event.listen(target, "checkin", _checked_in)


def cut(entry) -> None:
    """Closes a pool connection's socket at once, without a word to the server (asyncpg's
    `terminate`): a statement waiting on it fails now, and SQLAlchemy then discards the
    connection as disconnected. An aiosqlite connection is left alone: its statement runs in
    a thread and ends by SQLite's busy timeout (models/database.py), under the request
    timeout's default."""
    driver = entry.driver_connection
    terminate = getattr(driver, "terminate", None)
    if terminate is not None and not getattr(driver, "is_closed", lambda: True)():
        terminate()


class Deadlines:
    """The time limit of the requests running, kept by one timer that looks at them every
    `tick` seconds instead of a timer per request (`asyncio.timeout` costs about 5 us a
    request under uvloop: a tenth of a small query). A request is stopped between `seconds`
    and `seconds + tick` after it started: the database connections it holds are cut, then
    its task is cancelled."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.tick = min(1.0, max(0.01, seconds / 10))
        self._running: dict[asyncio.Task, float] = {}  # all deadlines `seconds` on: in their order
        self._holding: dict[asyncio.Task, set] = {}
        self._stopped: set[asyncio.Task] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop = None  # the timer's

    def running(self, task: asyncio.Task) -> bool:
        return task in self._running

    def start(self, task: asyncio.Task) -> None:
        """Call from `task` itself: the connections it checks out from now on are its own."""
        loop = task.get_loop()
        self._running[task] = loop.time() + self.seconds
        held: set = set()
        self._holding[task] = held
        _held.set(held)
        if self._timer is None or self._loop is not loop:  # none yet, or on a loop now gone
            self._loop = loop
            self._timer = loop.call_later(self.tick, self._sweep, loop)

    def end(self, task: asyncio.Task) -> bool:
        """Whether the task was stopped (cancelled) for running past its time."""
        self._running.pop(task, None)
        self._holding.pop(task, None)
        _held.set(None)
        if task in self._stopped:
            self._stopped.discard(task)
            return True
        return False

    def _sweep(self, loop) -> None:
        if loop is not self._loop:
            return
        now = loop.time()
        late = []
        for task, deadline in self._running.items():
            if deadline > now:
                break
            late.append(task)
        for task in late:
            del self._running[task]
            for entry in list(self._holding.pop(task, ())):
                cut(entry)
            self._stopped.add(task)
            task.cancel()
        self._timer = loop.call_later(self.tick, self._sweep, loop) if self._running else None
