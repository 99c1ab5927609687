"""full-text search: folded copies of the searchable texts, and their index

Revision ID: 0005
Revises: 0004

Adds the folded copies the writers keep of every searchable text (models/search.fold):
events.search_text (the content as Event.message shows it), sessions.search_title,
turns.search_query and turns.search_result, computes them for the rows already stored, and
builds the index over events.search_text: on SQLite an FTS5 table with the trigram tokenizer
(external content: the events table; the writer adds new events to it, models/search.py,
and triggers keep it in step on delete and update), on PostgreSQL a pg_trgm GIN index. CREATE EXTENSION pg_trgm needs a role allowed to create it: pg_trgm is a trusted
extension (PostgreSQL 13+), so a database owner may; on a managed PostgreSQL it must be on
the provider's list of allowed extensions (it is on Amazon RDS, Cloud SQL and Azure's).
"""

from alembic import op
import sqlalchemy as sa

from sessiongraph.models.search_text import fold, fold_content

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

COLUMNS = {
    'events': [('search_text', 'content', fold_content)],
    'sessions': [('search_title', 'title', fold)],
    'turns': [('search_query', 'user_query', fold), ('search_result', 'result', fold)],
}
BATCH = 2000

# The events whose folded text is not null are in the FTS5 table: the writer adds them
# (models/search.index_new_events), these triggers take them out and put them back.
SQLITE_INDEX = (
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


def _fill(bind, table: str) -> None:
    """The folded copies of the rows stored, a batch of rows at a time."""
    columns = COLUMNS[table]
    sources = ', '.join(source for _, source, _ in columns)
    sets = ', '.join(f'{name} = :{name}' for name, _, _ in columns)
    update = sa.text(f'UPDATE {table} SET {sets} WHERE id = :id')
    last = None
    while True:
        after = '' if last is None else 'WHERE id > :last '
        rows = bind.execute(
            sa.text(f'SELECT id, {sources} FROM {table} {after}ORDER BY id LIMIT {BATCH}'), {'last': last}
        ).all()
        if not rows:
            return
        values = [
            {'id': row[0], **{name: how(row[i]) for i, (name, _, how) in enumerate(columns, start=1)}}
            for row in rows
        ]
        values = [v for v in values if any(v[name] is not None for name, _, _ in columns)]
        if values:
            bind.execute(update, values)
        last = rows[-1][0]


def upgrade() -> None:
    for table, columns in COLUMNS.items():
        for name, _, _ in columns:
            op.add_column(table, sa.Column(name, sa.Text(), nullable=True))
    bind = op.get_bind()
    for table in COLUMNS:
        _fill(bind, table)
    if bind.dialect.name == 'postgresql':
        op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
        op.create_index('events_search_text_trgm', 'events', ['search_text'], postgresql_using='gin',
                        postgresql_ops={'search_text': 'gin_trgm_ops'})
    else:
        # An index over no row: the same indexes by name on both databases.
        op.create_index('events_search_text_trgm', 'events', ['search_text'], sqlite_where=sa.text('0'))
        for statement in SQLITE_INDEX:
            op.execute(statement)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != 'postgresql':
        for trigger in ('delete', 'update'):
            op.execute(f'DROP TRIGGER events_search_{trigger}')
        op.execute('DROP TABLE events_search')
    op.drop_index('events_search_text_trgm', table_name='events')
    for table, columns in COLUMNS.items():
        for name, _, _ in columns:
            op.drop_column(table, name)
