"""image.tag_uncertainty: the image classifier's uncertainty, which orders the tagging queue

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 20:10:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('image', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tag_uncertainty', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('image', schema=None) as batch_op:
        batch_op.drop_column('tag_uncertainty')
