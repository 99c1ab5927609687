"""indexes for the session list's filters

Revision ID: 0003
Revises: 0002

Per visibility scope (user_id, org_id), an index on (scope, column, created_at, id) over live
sessions for the kinds, resourceNames and reviewStatuses filters (the last two only over the
sessions that have the column set), and on PostgreSQL a GIN index (jsonb_path_ops) on
metadata for the metadata filter's `@>` (on SQLite an index of that name over no row). The same indexes as models/tables.py declares.
"""

from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

WHERE = {
    'kind': 'deleted_at IS NULL',
    'resource_name': 'deleted_at IS NULL AND resource_name IS NOT NULL',
    'review_status': 'deleted_at IS NULL AND review_status IS NOT NULL',
}
INDEXES = [(scope, column) for scope in ('user_id', 'org_id') for column in WHERE]


def upgrade() -> None:
    for scope, column in INDEXES:
        where = sa.text(WHERE[column])
        op.create_index(
            f'sessions_{scope}_{column}_created_at', 'sessions', [scope, column, 'created_at', 'id'],
            sqlite_where=where, postgresql_where=where,
        )
    # SQLite cannot index containment: there the index is partial over no row.
    op.create_index(
        'sessions_metadata_path_ops', 'sessions', ['metadata'],
        postgresql_using='gin', postgresql_ops={'metadata': 'jsonb_path_ops'}, sqlite_where=sa.text('0'),
    )


def downgrade() -> None:
    op.drop_index('sessions_metadata_path_ops', table_name='sessions')
    for scope, column in reversed(INDEXES):
        op.drop_index(f'sessions_{scope}_{column}_created_at', table_name='sessions')
