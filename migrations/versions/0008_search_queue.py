"""the search index brought up to date after the writes: a queue of events to index

Revision ID: 0008
Revises: 0007

Writing the index in the writer's transaction made an import with the search 2-4 times
slower than one without it (bench/RESULTS.md, round eight). From here the writer queues new
events in `search_pending` and an indexer moves them into the index (models/search.py); a
search reads the index and the queue.

PostgreSQL: the folded texts and their pg_trgm GIN index move from events.search_text to a
table of their own, `events_search` (event id, folded text), and the queue holds the folded
text the writer made until it is indexed. SQLite: the FTS5 table stays; the queue holds ids,
and the delete and update triggers leave a queued event's index entries alone (it has none).
"""

from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

# An event is in the FTS5 table unless it is queued.
SQLITE_TRIGGERS = (
    "CREATE TRIGGER events_search_delete AFTER DELETE ON events WHEN old.content IS NOT NULL BEGIN"
    " INSERT INTO events_search(events_search, rowid, search_text) SELECT 'delete', old.id, sg_search_text(old.content)"
    " WHERE NOT EXISTS (SELECT 1 FROM search_pending WHERE event_id = old.id);"
    " DELETE FROM search_pending WHERE event_id = old.id; END",
    "CREATE TRIGGER events_search_update AFTER UPDATE OF content ON events"
    " WHEN NOT EXISTS (SELECT 1 FROM search_pending WHERE event_id = old.id) BEGIN"
    " INSERT INTO events_search(events_search, rowid, search_text)"
    " SELECT 'delete', old.id, sg_search_text(old.content) WHERE old.content IS NOT NULL;"
    " INSERT INTO events_search(rowid, search_text) SELECT new.id, sg_search_text(new.content) WHERE new.content IS NOT NULL; END",
)

# Revision 0007's triggers (every event with a content in the FTS5 table).
SQLITE_TRIGGERS_0007 = (
    "CREATE TRIGGER events_search_delete AFTER DELETE ON events WHEN old.content IS NOT NULL BEGIN"
    " INSERT INTO events_search(events_search, rowid, search_text) VALUES ('delete', old.id, sg_search_text(old.content)); END",
    "CREATE TRIGGER events_search_update AFTER UPDATE OF content ON events BEGIN"
    " INSERT INTO events_search(events_search, rowid, search_text)"
    " SELECT 'delete', old.id, sg_search_text(old.content) WHERE old.content IS NOT NULL;"
    " INSERT INTO events_search(rowid, search_text) SELECT new.id, sg_search_text(new.content) WHERE new.content IS NOT NULL; END",
)


def _drop_sqlite_triggers() -> None:
    for trigger in ('delete', 'update'):
        op.execute(f'DROP TRIGGER events_search_{trigger}')


def upgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('CREATE TABLE search_pending (event_id INTEGER PRIMARY KEY)')
        _drop_sqlite_triggers()
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)
        return
    # No foreign key on the queue: a check a row in the writer's path; the indexer joins the
    # events, so a queued event deleted meanwhile is dropped from the queue, not indexed.
    op.execute('CREATE TABLE search_pending (event_id bigint PRIMARY KEY, search_text text NOT NULL)')
    op.execute(
        'CREATE TABLE events_search (event_id bigint PRIMARY KEY REFERENCES events (id) ON DELETE CASCADE,'
        ' search_text text NOT NULL)'
    )
    op.execute('INSERT INTO events_search (event_id, search_text) SELECT id, search_text FROM events WHERE search_text IS NOT NULL')
    op.execute('CREATE INDEX events_search_trgm ON events_search USING gin (search_text gin_trgm_ops)')
    op.execute('DROP INDEX events_search_text_trgm')
    op.execute('ALTER TABLE events DROP COLUMN search_text')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        op.execute(
            "INSERT INTO events_search(rowid, search_text) SELECT e.id, sg_search_text(e.content)"
            " FROM search_pending p JOIN events e ON e.id = p.event_id WHERE e.content IS NOT NULL"
        )
        _drop_sqlite_triggers()
        for statement in SQLITE_TRIGGERS_0007:
            op.execute(statement)
        op.execute('DROP TABLE search_pending')
        return
    op.execute('ALTER TABLE events ADD COLUMN search_text text')
    op.execute(
        'UPDATE events SET search_text = s.search_text FROM (SELECT event_id, search_text FROM events_search'
        ' UNION ALL SELECT event_id, search_text FROM search_pending) AS s WHERE events.id = s.event_id'
    )
    op.execute('CREATE INDEX events_search_text_trgm ON events USING gin (search_text gin_trgm_ops)')
    op.execute('DROP TABLE search_pending')
    op.execute('DROP TABLE events_search')
