"""events counted per session and type and per turn and type

Revision ID: 0006
Revises: 0005

`totalCount` of a session's or a turn's events sums these rows (one a type) instead of
counting the events: the writer (models/recording.py) keeps them in the transaction that
stores the events. Here they are computed for the events stored before. The same tables as
models/tables.py declares (SessionEventCount, TurnEventCount).
"""

from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'session_event_counts',
        sa.Column('session_id', sa.Uuid(), sa.ForeignKey('sessions.id'), nullable=False),
        sa.Column('type', sa.String(64), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('session_id', 'type'),
    )
    op.create_table(
        'turn_event_counts',
        sa.Column('turn_id', BIG_ID, sa.ForeignKey('turns.id'), autoincrement=False, nullable=False),
        sa.Column('type', sa.String(64), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('turn_id', 'type'),
    )
    op.execute(
        'INSERT INTO session_event_counts (session_id, type, count) '
        'SELECT session_id, type, count(*) FROM events GROUP BY session_id, type'
    )
    op.execute(
        'INSERT INTO turn_event_counts (turn_id, type, count) '
        'SELECT turn_id, type, count(*) FROM events WHERE turn_id IS NOT NULL GROUP BY turn_id, type'
    )
    # A session's tokens used is held to GraphQL's Int (resolvers/rules.MAX_TOKENS) from
    # now on; a sum SQLite took beyond it before is kept at the largest Int, so that it reads.
    op.execute('UPDATE sessions SET tokens_used = 2147483647 WHERE tokens_used > 2147483647')


def downgrade() -> None:
    op.drop_table('turn_event_counts')
    op.drop_table('session_event_counts')
