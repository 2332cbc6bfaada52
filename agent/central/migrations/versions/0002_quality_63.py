"""Widen readings.quality to 63 characters: OPC UA status names (``uncertain:UncertainEngineeringUnitsExceeded``).

On MariaDB/MySQL (utf8mb4) 32 and 63 characters both keep a one-byte length, so InnoDB widens
the column in place without copying the table, however many readings it holds.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("readings") as batch:
        batch.alter_column("quality", type_=sa.String(63), existing_type=sa.String(32),
                           existing_nullable=False, existing_server_default="good")


def downgrade() -> None:
    with op.batch_alter_table("readings") as batch:
        batch.alter_column("quality", type_=sa.String(32), existing_type=sa.String(63),
                           existing_nullable=False, existing_server_default="good")
