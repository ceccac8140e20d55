"""removal journal

Revision ID: 0005
Revises: 0004
The deletion journal (issue #12): a removal writes each row of ``deletions`` as an intent (outcome
``in-flight``) before its DELETE is sent and turns it into the outcome after; the row keeps the manifest's
bytes so that ``regdb restore RUN_ID`` can push it back. ``deletions`` is a documented contract: columns are
only added.

Create Date: 2026-12-01 19:30:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # Plain ADD COLUMN, as 0004: a batch rebuild of deletions would break the reclaimable view on it.
    op.add_column("deletions", sa.Column("intent_at", sa.DateTime(), nullable=True))
    op.add_column("deletions", sa.Column("manifest", sa.LargeBinary(), nullable=True))
    op.add_column("deletions", sa.Column("resolved_by", sa.String(), nullable=True))
    op.add_column("deletions", sa.Column("restored_by", sa.String(), nullable=True))
    # Every removal first looks for the in-flight rows an interrupted run left.
    op.create_index("ix_deletions_outcome", "deletions", ["outcome"])


def downgrade() -> None:
    op.drop_index("ix_deletions_outcome", table_name="deletions")
    for column in ("restored_by", "resolved_by", "manifest", "intent_at"):
        op.execute(f"ALTER TABLE deletions DROP COLUMN {column}")
