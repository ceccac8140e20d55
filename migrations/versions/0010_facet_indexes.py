"""indexes for Datasette's facet suggestions

Revision ID: 0010
Revises: 0009
Issue #18: Datasette's page of a view tries, for every column, three facet suggestions of at most 50 ms each,
one after the other; each one that cannot finish in time costs the page its 50 ms. Three indexes let most of
them finish on the bench's million tags: `tags (digest_id, repo_id)` (replacing 0001's index on `digest_id`
alone, which it covers) starts a query about image properties from the manifests and reads no tag row;
`repos (name)` and `digests (total_size)` give those columns in order, so a GROUP BY ... LIMIT stops after
its first groups. No view changes.

Create Date: 2026-12-02 01:40:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision: str = '0010'
down_revision: Union[str, Sequence[str], None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# Repositories from which statistics are worth gathering (regdb/inventory/summaries.py ANALYZE_AFTER, frozen here).
ANALYZE_AFTER_REPOS = 1_000
NEW_INDEXES = ('ix_tags_digest_id_repo_id', 'ix_repos_name', 'ix_digests_total_size')


def upgrade() -> None:
    op.create_index('ix_tags_digest_id_repo_id', 'tags', ['digest_id', 'repo_id'])
    op.drop_index('ix_tags_digest_id', table_name='tags')
    op.create_index('ix_repos_name', 'repos', ['name'])
    op.create_index('ix_digests_total_size', 'digests', ['total_size'])
    # Without statistics for the new indexes SQLite's planner guesses (0009 measured what a wrong guess costs);
    # a small inventory is fast either way.
    bind = op.get_bind()
    large = bind.execute(sa.text("SELECT COUNT(*) FROM repos")).scalar() >= ANALYZE_AFTER_REPOS
    if bind.dialect.name == 'sqlite' and large:
        for name in NEW_INDEXES:
            op.execute(f"ANALYZE {name}")


def downgrade() -> None:
    op.drop_index('ix_digests_total_size', table_name='digests')
    op.drop_index('ix_repos_name', table_name='repos')
    op.create_index('ix_tags_digest_id', 'tags', ['digest_id'])
    op.drop_index('ix_tags_digest_id_repo_id', table_name='tags')
