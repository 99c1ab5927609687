"""The time limit of running operations (`--request-timeout`), one timer for all of them."""

import asyncio


class Deadlines:
    """The time limit of the requests running, kept by one timer that looks at them every
    `tick` seconds instead of a timer per request (`asyncio.timeout` costs about 5 us a
    request under uvloop: a tenth of a small query). A request is stopped between `seconds`
    and `seconds + tick` after it started."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.tick = min(1.0, max(0.01, seconds / 10))
        self._running: dict[asyncio.Task, float] = {}  # all deadlines `seconds` on: in their order
        self._stopped: set[asyncio.Task] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop = None  # the timer's

    def start(self, task: asyncio.Task) -> None:
        loop = task.get_loop()
        self._running[task] = loop.time() + self.seconds
        if self._timer is None or self._loop is not loop:  # none yet, or on a loop now gone
            self._loop = loop
            self._timer = loop.call_later(self.tick, self._sweep, loop)

    def end(self, task: asyncio.Task) -> bool:
        """Whether the task was stopped (cancelled) for running past its time."""
        self._running.pop(task, None)
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
            self._stopped.add(task)
            task.cancel()
        self._timer = loop.call_later(self.tick, self._sweep, loop) if self._running else None
