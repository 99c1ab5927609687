"""the deployment's secrets: the download links' signing key

Revision ID: 0004
Revises: 0003

A table of secrets every server process of a deployment shares, and in it the key download
links are signed with (downloads/signing.py), made here once: any process then accepts a link
another one made. A deployment may set its own with SESSIONGRAPH_DOWNLOAD_SECRET instead.
"""

import secrets
from datetime import UTC, datetime

from alembic import op
import sqlalchemy as sa

from sessiongraph.models.types import UTCDateTime

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        'deployment_secrets',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('value', sa.String(length=255), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )
    op.bulk_insert(table, [{'name': 'downloads', 'value': secrets.token_urlsafe(32), 'created_at': datetime.now(UTC)}])


def downgrade() -> None:
    op.drop_table('deployment_secrets')
