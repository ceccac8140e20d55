"""repos.incomplete

Revision ID: 0004
Revises: 0003
Why the last listing of a repository was incomplete (a name skipped as invalid, a listing cut off at a bound),
NULL when it was complete. The sync writes it (hostile-registry work, issue #13); every removal that touches
such a repository, or a digest shared with it, refuses (removal safety, issue #12).

Create Date: 2026-12-01 19:30:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("repos", sa.Column("incomplete", sa.Text(), nullable=True))


def downgrade() -> None:
    # Plain ALTER TABLE (SQLite >= 3.35 and PostgreSQL): a batch rebuild of repos would break the views on it.
    op.execute("ALTER TABLE repos DROP COLUMN incomplete")
