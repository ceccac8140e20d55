"""bi summaries

Revision ID: 0008
Revises: 0007
The inventory as a BI source at a million tags (issue #18). `repo_stats`, `digest_usage` and `blob_usage`
computed on the fly took seconds before their first row; they now read summary tables (summary_repos,
summary_repo_blobs, summary_blobs, summary_digests, summary_blob_usage) that every writer keeps equal to the rows
they summarise in its own transaction (regdb/inventory/summaries.py). The views keep their names and columns. Indexes for
the age queries (digests.created) and the signatures view (cosign tags, OCI 1.1 subjects). The new view
statements are a frozen copy of regdb/inventory/views.py as it was when this revision was written; the summaries of an
existing inventory are filled here with a frozen copy of the summary rules, for every repository at once.

Create Date: 2026-12-01 19:30:00

"""
import importlib.util
from pathlib import Path
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

DIGEST = sa.String().with_variant(sa.String(collation='C'), 'postgresql')
# Repositories from which statistics are worth gathering (regdb/inventory/summaries.py ANALYZE_AFTER, frozen here).
ANALYZE_AFTER_REPOS = 1_000
SIGNATURE_TAG = "SUBSTR(name, 1, 7) = 'sha256-' AND LENGTH(name) >= 71"

DIGEST_USAGE_VIEW = """
CREATE VIEW digest_usage AS
SELECT registries.name AS registry,
       digests.digest AS digest,
       digests.media_type AS media_type,
       summary_digests.repos AS repos,
       summary_digests.tags AS tags,
       digests.total_size AS size
FROM summary_digests
JOIN registries ON registries.id = summary_digests.registry_id
JOIN digests ON digests.id = summary_digests.digest_id
"""

REPO_STATS_VIEW = """
CREATE VIEW repo_stats AS
SELECT registries.name AS registry,
       repos.name AS repo,
       COALESCE(summary_repos.tags, 0) AS tags,
       COALESCE(summary_repos.digests, 0) AS digests,
       COALESCE(summary_repos.total_bytes, 0) AS total_bytes,
       COALESCE(summary_repos.unique_bytes, 0) AS unique_bytes
FROM repos
JOIN registries ON registries.id = repos.registry_id
LEFT JOIN summary_repos ON summary_repos.repo_id = repos.id
"""

BLOB_USAGE_VIEW = """
CREATE VIEW blob_usage AS
SELECT registries.name AS registry,
       summary_blob_usage.blob_digest AS blob_digest,
       summary_blob_usage.size AS size,
       summary_blob_usage.manifests AS manifests,
       summary_blob_usage.repos AS repos
FROM summary_blob_usage
JOIN registries ON registries.id = summary_blob_usage.registry_id
"""

# The summaries of every repository, from the rows they summarise (the rules of regdb/inventory/summaries.py, unscoped).
HELD = """
SELECT repo_digests.repo_id AS repo_id, digests.digest AS blob_digest, digests.size AS size
FROM repo_digests JOIN digests ON digests.id = repo_digests.digest_id
UNION ALL
SELECT repo_digests.repo_id AS repo_id, digest_blobs.blob_digest AS blob_digest, digest_blobs.size AS size
FROM repo_digests JOIN digest_blobs ON digest_blobs.digest_id = repo_digests.digest_id
"""

FILL = (
    f"""
INSERT INTO summary_repo_blobs (repo_id, registry_id, blob_digest, size)
SELECT held.repo_id, repos.registry_id, held.blob_digest, MAX(held.size)
FROM ({HELD}) AS held JOIN repos ON repos.id = held.repo_id
GROUP BY held.repo_id, repos.registry_id, held.blob_digest
""",
    """
INSERT INTO summary_blobs (registry_id, blob_digest, repos)
SELECT registry_id, blob_digest, COUNT(*) FROM summary_repo_blobs GROUP BY registry_id, blob_digest
""",
    """
INSERT INTO summary_repos (repo_id, registry_id, tags, digests, total_bytes, unique_bytes)
SELECT repos.id, repos.registry_id,
       (SELECT COUNT(*) FROM tags WHERE tags.repo_id = repos.id),
       (SELECT COUNT(*) FROM repo_digests WHERE repo_digests.repo_id = repos.id),
       COALESCE((SELECT SUM(summary_repo_blobs.size) FROM summary_repo_blobs
                 WHERE summary_repo_blobs.repo_id = repos.id), 0),
       COALESCE((SELECT SUM(summary_repo_blobs.size) FROM summary_repo_blobs
                 JOIN summary_blobs ON summary_blobs.registry_id = summary_repo_blobs.registry_id
                                   AND summary_blobs.blob_digest = summary_repo_blobs.blob_digest
                 WHERE summary_repo_blobs.repo_id = repos.id AND summary_blobs.repos = 1), 0)
FROM repos
""",
    """
INSERT INTO summary_digests (registry_id, digest_id, repos, tags)
SELECT repos.registry_id, repo_digests.digest_id, COUNT(DISTINCT repo_digests.repo_id), COUNT(tags.id)
FROM repo_digests
JOIN repos ON repos.id = repo_digests.repo_id
LEFT JOIN tags ON tags.repo_id = repo_digests.repo_id AND tags.digest_id = repo_digests.digest_id
GROUP BY repos.registry_id, repo_digests.digest_id
""",
    """
INSERT INTO summary_blob_usage (registry_id, blob_digest, size, manifests, repos)
SELECT repos.registry_id, digest_blobs.blob_digest, MAX(digest_blobs.size),
       COUNT(DISTINCT digest_blobs.digest_id), COUNT(DISTINCT repo_digests.repo_id)
FROM digest_blobs
JOIN repo_digests ON repo_digests.digest_id = digest_blobs.digest_id
JOIN repos ON repos.id = repo_digests.repo_id
GROUP BY repos.registry_id, digest_blobs.blob_digest
""",
)


# Every change to tags or repo_digests marks its repository dirty, whoever writes (sync, removal, untag, a
# notification listener, a hand-written statement): refresh_summaries() recomputes exactly those repositories.
MARKED_TABLES = ('tags', 'repo_digests')
SQLITE_TRIGGERS = [
    f"""
CREATE TRIGGER summary_dirty_{table}_{event} AFTER {event.upper()} ON {table}
BEGIN
{body}
END
"""
    for table in MARKED_TABLES
    for event, body in (
        ('insert', "    INSERT OR IGNORE INTO summary_dirty (repo_id) VALUES (NEW.repo_id);"),
        ('update', "    INSERT OR IGNORE INTO summary_dirty (repo_id) VALUES (OLD.repo_id);\n"
                   "    INSERT OR IGNORE INTO summary_dirty (repo_id) VALUES (NEW.repo_id);"),
        ('delete', "    INSERT OR IGNORE INTO summary_dirty (repo_id) VALUES (OLD.repo_id);"),
    )
]
POSTGRESQL_FUNCTION = """
CREATE FUNCTION regdb_summary_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        INSERT INTO summary_dirty (repo_id) VALUES (OLD.repo_id) ON CONFLICT DO NOTHING;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO summary_dirty (repo_id) VALUES (NEW.repo_id) ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$$
"""
POSTGRESQL_TRIGGERS = [
    f"CREATE TRIGGER summary_dirty_{table} AFTER INSERT OR UPDATE OR DELETE ON {table} "
    "FOR EACH ROW EXECUTE FUNCTION regdb_summary_dirty()"
    for table in MARKED_TABLES
]


def upgrade() -> None:
    op.create_table(
        'summary_dirty',
        sa.Column('repo_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint('repo_id', name=op.f('pk_summary_dirty')),
    )
    op.create_table(
        'summary_repos',
        sa.Column('repo_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('registry_id', sa.Integer(), nullable=False),
        sa.Column('tags', sa.BigInteger(), nullable=False),
        sa.Column('digests', sa.BigInteger(), nullable=False),
        sa.Column('total_bytes', sa.BigInteger(), nullable=False),
        sa.Column('unique_bytes', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('repo_id', name=op.f('pk_summary_repos')),
    )
    op.create_table(
        'summary_repo_blobs',
        sa.Column('repo_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('blob_digest', DIGEST, nullable=False),
        sa.Column('registry_id', sa.Integer(), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('repo_id', 'blob_digest', name=op.f('pk_summary_repo_blobs')),
    )
    op.create_index('ix_summary_repo_blobs_registry_blob', 'summary_repo_blobs', ['registry_id', 'blob_digest'])
    op.create_table(
        'summary_blobs',
        sa.Column('registry_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('blob_digest', DIGEST, nullable=False),
        sa.Column('repos', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('registry_id', 'blob_digest', name=op.f('pk_summary_blobs')),
    )
    op.create_table(
        'summary_digests',
        sa.Column('registry_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('digest_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('repos', sa.BigInteger(), nullable=False),
        sa.Column('tags', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('registry_id', 'digest_id', name=op.f('pk_summary_digests')),
    )
    op.create_table(
        'summary_blob_usage',
        sa.Column('registry_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('blob_digest', DIGEST, nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('manifests', sa.BigInteger(), nullable=False),
        sa.Column('repos', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('registry_id', 'blob_digest', name=op.f('pk_summary_blob_usage')),
    )
    op.create_index('ix_digests_created', 'digests', ['created'])
    op.create_index('ix_digests_subject_digest', 'digests', ['subject_digest'],
                    sqlite_where=sa.text('subject_digest IS NOT NULL'),
                    postgresql_where=sa.text('subject_digest IS NOT NULL'))
    op.create_index('ix_tags_signature', 'tags', ['repo_id', 'digest_id'], sqlite_where=sa.text(SIGNATURE_TAG),
                    postgresql_where=sa.text(SIGNATURE_TAG))
    for statement in FILL:
        op.execute(statement)
    if op.get_bind().dialect.name == 'postgresql':
        for statement in [POSTGRESQL_FUNCTION, *POSTGRESQL_TRIGGERS]:
            op.execute(statement)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)
    for name, statement in (('digest_usage', DIGEST_USAGE_VIEW), ('repo_stats', REPO_STATS_VIEW),
                            ('blob_usage', BLOB_USAGE_VIEW)):
        op.execute(f"DROP VIEW {name}")
        op.execute(statement)
    # The planner needs statistics to read digests by build time and tags by the signature index on a large
    # inventory (without them SQLite scans every tag); regdb/inventory/summaries.py refreshes them after a large change.
    # A small inventory is fast without them.
    if op.get_bind().execute(sa.text("SELECT COUNT(*) FROM repos")).scalar() >= ANALYZE_AFTER_REPOS:
        op.execute("ANALYZE")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for table in MARKED_TABLES:
            op.execute(f"DROP TRIGGER summary_dirty_{table} ON {table}")
        op.execute("DROP FUNCTION regdb_summary_dirty()")
    else:
        for table in MARKED_TABLES:
            for event in ('insert', 'update', 'delete'):
                op.execute(f"DROP TRIGGER summary_dirty_{table}_{event}")
    # The views as 0002 froze them (the summaries they read go below).
    spec = importlib.util.spec_from_file_location("regdb_migration_0002", Path(__file__).with_name("0002_views.py"))
    views = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(views)
    for name in ('blob_usage', 'repo_stats', 'digest_usage'):
        op.execute(f"DROP VIEW {name}")
    op.execute(views.DIGEST_USAGE_VIEW)
    op.execute(views.REPO_STATS_VIEW)
    op.execute(views.BLOB_USAGE_VIEW)
    op.drop_index('ix_tags_signature', table_name='tags')
    op.drop_index('ix_digests_subject_digest', table_name='digests')
    op.drop_index('ix_digests_created', table_name='digests')
    for table in ('summary_blob_usage', 'summary_digests', 'summary_blobs', 'summary_repo_blobs', 'summary_repos',
                  'summary_dirty'):
        op.drop_table(table)
