"""views digest_usage, repo_stats, blob_usage

Revision ID: 0002
Revises: 0001
The views BI users read beside `images` (README, "The inventory as a data source"); portable SQL, the same on
SQLite and PostgreSQL. The statements are a frozen copy of regdb/inventory/views.py as it was when this revision was
written: a later change to a view is a new revision, so this one never changes under an existing inventory
(tests/test_sql.py checks that the copy and regdb/inventory/views.py agree).

Create Date: 2026-11-27 07:40:00

"""
from typing import Sequence, Union

from alembic import op


# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

DIGEST_USAGE_VIEW = """
CREATE VIEW digest_usage AS
SELECT registries.name AS registry,
       digests.digest AS digest,
       digests.media_type AS media_type,
       COUNT(DISTINCT repo_digests.repo_id) AS repos,
       COUNT(tags.id) AS tags,
       digests.total_size AS size
FROM repo_digests
JOIN repos ON repos.id = repo_digests.repo_id
JOIN registries ON registries.id = repos.registry_id
JOIN digests ON digests.id = repo_digests.digest_id
LEFT JOIN tags ON tags.repo_id = repo_digests.repo_id AND tags.digest_id = repo_digests.digest_id
GROUP BY registries.id, registries.name, digests.id, digests.digest, digests.media_type, digests.total_size
"""

REPO_STATS_VIEW = """
CREATE VIEW repo_stats AS
WITH held AS (
    SELECT repo_digests.repo_id AS repo_id, digests.digest AS blob_digest, digests.size AS size
    FROM repo_digests
    JOIN digests ON digests.id = repo_digests.digest_id
    UNION ALL
    SELECT repo_digests.repo_id AS repo_id, digest_blobs.blob_digest AS blob_digest, digest_blobs.size AS size
    FROM repo_digests
    JOIN digest_blobs ON digest_blobs.digest_id = repo_digests.digest_id
),
repo_blobs AS (
    SELECT held.repo_id AS repo_id, repos.registry_id AS registry_id, held.blob_digest AS blob_digest,
           MAX(held.size) AS size
    FROM held
    JOIN repos ON repos.id = held.repo_id
    GROUP BY held.repo_id, repos.registry_id, held.blob_digest
),
blob_repos AS (
    SELECT registry_id, blob_digest, COUNT(*) AS repos
    FROM repo_blobs
    GROUP BY registry_id, blob_digest
),
repo_bytes AS (
    SELECT repo_blobs.repo_id AS repo_id,
           CAST(SUM(repo_blobs.size) AS BIGINT) AS total_bytes,
           CAST(SUM(CASE WHEN blob_repos.repos = 1 THEN repo_blobs.size ELSE 0 END) AS BIGINT) AS unique_bytes
    FROM repo_blobs
    JOIN blob_repos ON blob_repos.registry_id = repo_blobs.registry_id
                   AND blob_repos.blob_digest = repo_blobs.blob_digest
    GROUP BY repo_blobs.repo_id
)
SELECT registries.name AS registry,
       repos.name AS repo,
       (SELECT COUNT(*) FROM tags WHERE tags.repo_id = repos.id) AS tags,
       (SELECT COUNT(*) FROM repo_digests WHERE repo_digests.repo_id = repos.id) AS digests,
       COALESCE(repo_bytes.total_bytes, 0) AS total_bytes,
       COALESCE(repo_bytes.unique_bytes, 0) AS unique_bytes
FROM repos
JOIN registries ON registries.id = repos.registry_id
LEFT JOIN repo_bytes ON repo_bytes.repo_id = repos.id
"""

BLOB_USAGE_VIEW = """
CREATE VIEW blob_usage AS
SELECT registries.name AS registry,
       digest_blobs.blob_digest AS blob_digest,
       MAX(digest_blobs.size) AS size,
       COUNT(DISTINCT digest_blobs.digest_id) AS manifests,
       COUNT(DISTINCT repo_digests.repo_id) AS repos
FROM digest_blobs
JOIN repo_digests ON repo_digests.digest_id = digest_blobs.digest_id
JOIN repos ON repos.id = repo_digests.repo_id
JOIN registries ON registries.id = repos.registry_id
GROUP BY registries.id, registries.name, digest_blobs.blob_digest
"""


def upgrade() -> None:
    op.execute(DIGEST_USAGE_VIEW)
    op.execute(REPO_STATS_VIEW)
    op.execute(BLOB_USAGE_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW blob_usage")
    op.execute("DROP VIEW repo_stats")
    op.execute("DROP VIEW digest_usage")
