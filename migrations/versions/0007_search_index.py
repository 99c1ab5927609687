"""SQLite's search index holds the folded text itself: no folded copy in events

Revision ID: 0007
Revises: 0006

On SQLite, the FTS5 table of revision 0005 read the folded text from a copy stored in every
event's row (events.search_text, external content) and kept positions of its trigrams it
never needed (searches check their candidates). Writing that copy cost about as much as
the index itself. Here the index becomes an FTS5 table of its own (contentless,
detail=none, no sizes kept), fed the folded text by the writer (models/search.py, folding in
SQL with `sg_search_text`, which models/database.py registers on every connection), and the
column events.search_text and its index over no row go: the data stays, the index is
rebuilt from the contents. PostgreSQL is unchanged: its GIN index covers the column.
"""

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# The index's writes: pending entries flushed once a transaction up to 16 MB (an import's
# batch, not every 1 MB: fewer, larger segments to merge), and segments merged 8 at a time.
SQLITE_INDEX = (
    "CREATE VIRTUAL TABLE events_search USING fts5(search_text, content='', columnsize=0, detail='none',"
    " tokenize='trigram case_sensitive 1')",
    "INSERT INTO events_search(events_search, rank) VALUES ('hashsize', 16000000)",
    "INSERT INTO events_search(events_search, rank) VALUES ('automerge', 8)",
    # A contentless table forgets a row given the text it was given (the same fold again).
    "CREATE TRIGGER events_search_delete AFTER DELETE ON events WHEN old.content IS NOT NULL BEGIN"
    " INSERT INTO events_search(events_search, rowid, search_text) VALUES ('delete', old.id, sg_search_text(old.content)); END",
    "CREATE TRIGGER events_search_update AFTER UPDATE OF content ON events BEGIN"
    " INSERT INTO events_search(events_search, rowid, search_text)"
    " SELECT 'delete', old.id, sg_search_text(old.content) WHERE old.content IS NOT NULL;"
    " INSERT INTO events_search(rowid, search_text) SELECT new.id, sg_search_text(new.content) WHERE new.content IS NOT NULL; END",
    "INSERT INTO events_search(rowid, search_text) SELECT id, sg_search_text(content) FROM events WHERE content IS NOT NULL",
)

# Revision 0005's: the index over the stored folded copy.
SQLITE_INDEX_0005 = (
    "ALTER TABLE events ADD COLUMN search_text TEXT",
    "UPDATE events SET search_text = sg_search_text(content) WHERE content IS NOT NULL",
    "CREATE INDEX events_search_text_trgm ON events (search_text) WHERE 0",
    "CREATE VIRTUAL TABLE events_search USING fts5(search_text, content='events', content_rowid='id',"
    " tokenize='trigram case_sensitive 1', detail='none')",
    "CREATE TRIGGER events_search_delete AFTER DELETE ON events WHEN old.search_text IS NOT NULL BEGIN"
    " INSERT INTO events_search(events_search, rowid, search_text) VALUES ('delete', old.id, old.search_text); END",
    "CREATE TRIGGER events_search_update AFTER UPDATE OF search_text ON events BEGIN"
    " INSERT INTO events_search(events_search, rowid, search_text)"
    " SELECT 'delete', old.id, old.search_text WHERE old.search_text IS NOT NULL;"
    " INSERT INTO events_search(rowid, search_text) SELECT new.id, new.search_text WHERE new.search_text IS NOT NULL; END",
    "INSERT INTO events_search(rowid, search_text) SELECT id, search_text FROM events WHERE search_text IS NOT NULL",
)


def _drop_index() -> None:
    for trigger in ('delete', 'update'):
        op.execute(f'DROP TRIGGER events_search_{trigger}')
    op.execute('DROP TABLE events_search')


def upgrade() -> None:
    if op.get_bind().dialect.name != 'sqlite':
        return
    _drop_index()
    op.execute('DROP INDEX events_search_text_trgm')
    op.execute('ALTER TABLE events DROP COLUMN search_text')
    for statement in SQLITE_INDEX:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != 'sqlite':
        return
    _drop_index()
    for statement in SQLITE_INDEX_0005:
        op.execute(statement)
