"""the lease as one PostgreSQL function: s4al_lease (service/queue_pg.py); nothing on SQLite

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 04:10:00

"""
from typing import Sequence, Union

from alembic import op

from service.queue_pg import CREATE_LEASE_FUNCTION, DROP_LEASE_FUNCTION

revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(CREATE_LEASE_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(DROP_LEASE_FUNCTION)
