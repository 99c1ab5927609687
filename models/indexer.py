"""The indexer: moves the events the writers queued into the search index (models/search.py),
a batch a transaction. `index_all` empties the queue (`sessiongraph index`, and each round of
the server's `keep_indexing`); every server process runs `keep_indexing` in the background,
and on PostgreSQL the processes of several replicas share the queue."""

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from sessiongraph.models.recording import write_transaction
from sessiongraph.models.search import INDEX_BATCH, index_pending

log = logging.getLogger("sessiongraph.indexer")

# How often an idle server looks at the queue, and how long it waits after a failure (the
# database away): a search finds queued events meanwhile, only slower.
IDLE_SECONDS = 1.0
RETRY_SECONDS = 5.0


async def index_all(engine: AsyncEngine, batch: int | None = None) -> int:
    """Indexes what is queued, a transaction a batch (the database's `INDEX_BATCH` unless
    given), until a batch comes short; how many."""
    batch = batch or INDEX_BATCH[engine.dialect.name]
    total = 0
    while True:
        async with write_transaction(engine) as connection:
            moved = await index_pending(connection, batch)
        total += moved
        if moved < batch:
            return total


async def keep_indexing(engine: AsyncEngine, idle_seconds: float = IDLE_SECONDS) -> None:
    """The server's background task, until cancelled."""
    while True:
        try:
            if moved := await index_all(engine):
                log.debug("indexed %d events", moved)
        except Exception as e:  # noqa: BLE001 -- the database away or busy: a later round does it
            log.warning("search index not brought up to date, again in %.0f s: %s", RETRY_SECONDS, e)
            await asyncio.sleep(RETRY_SECONDS)
            continue
        await asyncio.sleep(idle_seconds)
