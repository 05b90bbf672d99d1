"""queue indexes: ix_region_queue gains id (a total order for the claim); ix_lease_skipped (partial)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 20:20:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('region', schema=None) as batch_op:
        batch_op.drop_index('ix_region_queue')
        batch_op.create_index('ix_region_queue', ['project_id', 'status', 'score', 'id'], unique=False)
    with op.batch_alter_table('lease', schema=None) as batch_op:
        batch_op.create_index('ix_lease_skipped', ['token_id', 'region_id'], unique=False,
                              postgresql_where=sa.text("state = 'skipped'"),
                              sqlite_where=sa.text("state = 'skipped'"))


def downgrade() -> None:
    with op.batch_alter_table('lease', schema=None) as batch_op:
        batch_op.drop_index('ix_lease_skipped', postgresql_where=sa.text("state = 'skipped'"),
                            sqlite_where=sa.text("state = 'skipped'"))
    with op.batch_alter_table('region', schema=None) as batch_op:
        batch_op.drop_index('ix_region_queue')
        batch_op.create_index('ix_region_queue', ['project_id', 'status', 'score'], unique=False)
