"""label quality: review, gold regions, consensus, effort; leases held by a page instance

Revision ID: 0006
Revises: 0005_auto_cycle
Create Date: 2026-11-29 01:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

from service.queue_pg import CREATE_LEASE_FUNCTION, DROP_LEASE_FUNCTION

revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005_auto_cycle'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_OLD_WHERE = "state = 'skipped'"
_NEW_WHERE = "state IN ('skipped', 'rejected', 'consensus')"


def upgrade() -> None:
    with op.batch_alter_table('project', schema=None) as batch_op:
        batch_op.add_column(sa.Column('quality', sa.JSON(), nullable=True))
    with op.batch_alter_table('region', schema=None) as batch_op:
        batch_op.add_column(sa.Column('gold_mask_path', sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column('overlap', sa.Integer(), server_default='1', nullable=False))
    with op.batch_alter_table('lease', schema=None) as batch_op:
        batch_op.add_column(sa.Column('page', sa.String(length=64), nullable=True))
        batch_op.drop_index('ix_lease_skipped', postgresql_where=sa.text(_OLD_WHERE),
                            sqlite_where=sa.text(_OLD_WHERE))
        batch_op.create_index('ix_lease_skipped', ['token_id', 'region_id'], unique=False,
                              postgresql_where=sa.text(_NEW_WHERE), sqlite_where=sa.text(_NEW_WHERE))
    with op.batch_alter_table('annotation', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mask_sha256', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('in_labels', sa.Boolean(), server_default=sa.text('true'),
                                      nullable=False))
        batch_op.add_column(sa.Column('review_state', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('review_reason', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('reviewed_by', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('active_seconds', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('strokes', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('labeled_pixels', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('pixels_changed', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('unchanged', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('gold_accuracy', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('gold_miou', sa.Float(), nullable=True))
        batch_op.create_index('ix_annotation_review', ['review_state', 'id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_annotation_reviewed_by_token'), 'token', ['reviewed_by'],
                                    ['id'], ondelete='SET NULL')
    if op.get_bind().dialect.name == "postgresql":
        op.execute(DROP_LEASE_FUNCTION_0004)
        op.execute(CREATE_LEASE_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(DROP_LEASE_FUNCTION)
        op.execute(_lease_function_0004())
    with op.batch_alter_table('annotation', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_annotation_reviewed_by_token'), type_='foreignkey')
        batch_op.drop_index('ix_annotation_review')
        for name in ('gold_miou', 'gold_accuracy', 'unchanged', 'pixels_changed', 'labeled_pixels', 'strokes',
                     'active_seconds', 'reviewed_at', 'reviewed_by', 'review_reason', 'review_state',
                     'in_labels', 'mask_sha256'):
            batch_op.drop_column(name)
    with op.batch_alter_table('lease', schema=None) as batch_op:
        batch_op.drop_index('ix_lease_skipped', postgresql_where=sa.text(_NEW_WHERE),
                            sqlite_where=sa.text(_NEW_WHERE))
        batch_op.create_index('ix_lease_skipped', ['token_id', 'region_id'], unique=False,
                              postgresql_where=sa.text(_OLD_WHERE), sqlite_where=sa.text(_OLD_WHERE))
        batch_op.drop_column('page')
    with op.batch_alter_table('region', schema=None) as batch_op:
        batch_op.drop_column('overlap')
        batch_op.drop_column('gold_mask_path')
    with op.batch_alter_table('project', schema=None) as batch_op:
        batch_op.drop_column('quality')


DROP_LEASE_FUNCTION_0004 = ("DROP FUNCTION IF EXISTS s4al_lease(integer, integer, text[], timestamptz, "
                            "timestamptz, text, integer)")


def _lease_function_0004() -> str:
    """0004's text of the function (frozen there); migrations are files, not a package."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("_s4al_0004", Path(__file__).with_name("0004_lease_function.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.LEASE_FUNCTION_0004
