"""broken indexes

Revision ID: 0006
Revises: 0005
An index whose child the registry no longer has (a child deleted by digest, a garbage collection) is recorded
with that child marked missing (`digest_children.missing`) instead of failing every sync (issue #13). The
child then has a placeholder row in `digests` (kind 'missing': never in repo_digests, so no other view shows
it). The `broken_indexes` view lists them: a frozen copy of regdb/inventory/views.py as it was when this revision was
written (tests/test_sql.py checks that the two agree).

Create Date: 2026-12-01 19:30:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

BROKEN_INDEXES_VIEW = """
CREATE VIEW broken_indexes AS
SELECT registries.name AS registry,
       repos.name AS repo,
       parent.digest AS digest,
       child.digest AS child_digest,
       digest_children.architecture AS architecture,
       digest_children.os AS os,
       digest_children.variant AS variant,
       (SELECT COUNT(*) FROM tags WHERE tags.repo_id = repos.id AND tags.digest_id = parent.id) AS tags
FROM digest_children
JOIN digests AS parent ON parent.id = digest_children.parent_id
JOIN digests AS child ON child.id = digest_children.child_id
JOIN repo_digests ON repo_digests.digest_id = parent.id
JOIN repos ON repos.id = repo_digests.repo_id
JOIN registries ON registries.id = repos.registry_id
WHERE digest_children.missing = TRUE
"""


def upgrade() -> None:
    op.add_column("digest_children", sa.Column("missing", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute(BROKEN_INDEXES_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW broken_indexes")
    # Plain ALTER TABLE (SQLite >= 3.35 and PostgreSQL): a batch rebuild would break the views on the table.
    op.execute("ALTER TABLE digest_children DROP COLUMN missing")
