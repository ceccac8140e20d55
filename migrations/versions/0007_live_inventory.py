"""live inventory

Revision ID: 0007
Revises: 0006
Reserved for notifications, tag history, pulls, rejected events (issue #15); a no-op until that work fills it in, so that the revisions of work done in
parallel form one chain.

Create Date: 2026-12-01 19:30:00

"""
from typing import Sequence, Union


# revision identifiers, used by Alembic.
revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
