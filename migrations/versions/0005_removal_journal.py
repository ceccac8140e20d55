"""removal journal

Revision ID: 0005
Revises: 0004
Reserved for the deletion journal and restore (issue #12); a no-op until that work fills it in, so that the revisions of work done in
parallel form one chain.

Create Date: 2026-12-01 19:30:00

"""
from typing import Sequence, Union


# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
