"""auto cycle: project.auto_cycle (the rule), cycle.trigger (manual | auto), ix_annotation_created

Revision ID: 0005_auto_cycle
Revises: 0004
Create Date: 2026-11-29 01:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0005_auto_cycle'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('project', schema=None) as batch_op:
        batch_op.add_column(sa.Column('auto_cycle', sa.JSON(), nullable=True))
    with op.batch_alter_table('cycle', schema=None) as batch_op:
        batch_op.add_column(sa.Column('trigger', sa.String(length=10), server_default='manual',
                                      nullable=False))
    with op.batch_alter_table('annotation', schema=None) as batch_op:
        batch_op.create_index('ix_annotation_created', ['created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('annotation', schema=None) as batch_op:
        batch_op.drop_index('ix_annotation_created')
    with op.batch_alter_table('cycle', schema=None) as batch_op:
        batch_op.drop_column('trigger')
    with op.batch_alter_table('project', schema=None) as batch_op:
        batch_op.drop_column('auto_cycle')
