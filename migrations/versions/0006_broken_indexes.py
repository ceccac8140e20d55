"""broken indexes

Revision ID: 0006
Revises: 0005
Reserved for missing index children and the broken_indexes view (issue #13); a no-op until that work fills it in, so that the revisions of work done in
parallel form one chain.

Create Date: 2026-12-01 19:30:00

"""
from typing import Sequence, Union


# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
