"""bi summaries

Revision ID: 0008
Revises: 0007
Reserved for summary tables behind the BI views (issue #18); a no-op until that work fills it in, so that the revisions of work done in
parallel form one chain.

Create Date: 2026-12-01 19:30:00

"""
from typing import Sequence, Union


# revision identifiers, used by Alembic.
revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
