"""session kinds: TERMINAL and RED_TEAM details, status, costs

Revision ID: 0002
Revises: 0001

Stored sessions become AGENT sessions, OPEN, created by a USER identity: before this
revision nothing recorded an end or the identity type of the key that created a session, so
none is DONE and none is MACHINE (from now on createSession records the key's). Their cost is
0 and their turns' cost unknown (null).
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from sessiongraph.models.types import UTCDateTime

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
BIGINT = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def _string(name: str, length: int = 255) -> sa.Column:
    return sa.Column(name, sa.String(length), nullable=True)


SESSION_COLUMNS = [
    sa.Column('kind', sa.String(16), nullable=False, server_default='AGENT'),
    sa.Column('cost_usd_micros', BIGINT, nullable=False, server_default='0'),
    sa.Column('status', sa.String(8), nullable=False, server_default='OPEN'),
    sa.Column('ended_at', UTCDateTime(), nullable=True),
    _string('batch_id'),
    _string('correlation_id'),
    sa.Column('identity_type', sa.String(16), nullable=False, server_default='USER'),
    _string('verb', 16),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('terminal_input', sa.Text(), nullable=True),
    sa.Column('input_size', sa.Integer(), nullable=False, server_default='0'),
    sa.Column('stream_size', BIGINT, nullable=False, server_default='0'),
    sa.Column('terminal_columns', sa.Integer(), nullable=True),
    sa.Column('terminal_rows', sa.Integer(), nullable=True),
    _string('user_email'),
    _string('user_display_name'),
    _string('user_subject'),
    _string('machine_identity_id'),
    sa.Column('data_masking', JSON, nullable=True),
    sa.Column('guardrails', JSON, nullable=False, server_default='[]'),
    sa.Column('guardrail_count', sa.Integer(), nullable=False, server_default='0'),
    sa.Column('ai_analysis', JSON, nullable=True),
    _string('resource_name'),
    _string('resource_type'),
    _string('resource_subtype'),
    _string('resource_resource_name'),
    sa.Column('resource_tags', JSON, nullable=True),
    _string('review_status', 16),
    sa.Column('review_created_at', UTCDateTime(), nullable=True),
    sa.Column('review_decisions', JSON, nullable=True),
    _string('runner_id'),
    sa.Column('endpoints', JSON, nullable=True),
    sa.Column('red_team_settings', JSON, nullable=True),
]

TURN_COLUMNS = [
    sa.Column('cost_usd_micros', BIGINT, nullable=True),
    _string('endpoint'),
    sa.Column('prepared_prompt', sa.Text(), nullable=True),
    sa.Column('red_team_settings', JSON, nullable=True),
]


def upgrade() -> None:
    # Plain ADD COLUMNs (each with its default for the rows there are): SQLite adds them
    # without copying the table, PostgreSQL without rewriting it.
    for column in SESSION_COLUMNS:
        op.add_column('sessions', column)
    for column in TURN_COLUMNS:
        op.add_column('turns', column)
    # A chat's turns (RED_TEAM sessions: one chat per endpoint), in order.
    op.create_index('turns_session_endpoint_position', 'turns', ['session_id', 'endpoint', 'position'])


def downgrade() -> None:
    op.drop_index('turns_session_endpoint_position', table_name='turns')
    with op.batch_alter_table('turns') as batch_op:
        for column in reversed(TURN_COLUMNS):
            batch_op.drop_column(column.name)
    with op.batch_alter_table('sessions') as batch_op:
        for column in reversed(SESSION_COLUMNS):
            batch_op.drop_column(column.name)
