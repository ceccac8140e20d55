"""views signatures, reclaimable

Revision ID: 0003
Revises: 0002
Retention (issue #7): `signatures` shows cosign signatures, attestations, SBOMs and OCI 1.1 referrers with the
digest they belong to; `reclaimable` is what a garbage collection would free after regdb's deletions, the same
figure a removal plan reports. Portable SQL, the same on SQLite and PostgreSQL; a frozen copy of regdb/inventory/views.py
as it was when this revision was written (tests/test_sql.py checks that the two agree).

Create Date: 2026-11-27 09:00:00

"""
from typing import Sequence, Union

from alembic import op


# revision identifiers, used by Alembic.
revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

SIGNATURES_VIEW = """
CREATE VIEW signatures AS
SELECT registries.name AS registry,
       repos.name AS repo,
       'sha256:' || SUBSTR(tags.name, 8, 64) AS subject,
       digests.digest AS digest,
       tags.name AS tag,
       CASE SUBSTR(tags.name, 72)
           WHEN '.sig' THEN 'sig' WHEN '.att' THEN 'att' WHEN '.sbom' THEN 'sbom' WHEN '' THEN 'referrers'
           ELSE 'other'
       END AS kind,
       CASE WHEN EXISTS (
           SELECT 1 FROM repo_digests AS present JOIN digests AS subject ON subject.id = present.digest_id
           WHERE present.repo_id = repos.id AND subject.digest = 'sha256:' || SUBSTR(tags.name, 8, 64)
       ) THEN 1 ELSE 0 END AS subject_present
FROM tags
JOIN repos ON repos.id = tags.repo_id
JOIN registries ON registries.id = repos.registry_id
JOIN digests ON digests.id = tags.digest_id
WHERE SUBSTR(tags.name, 1, 7) = 'sha256-' AND LENGTH(tags.name) >= 71
UNION ALL
SELECT registries.name AS registry,
       repos.name AS repo,
       digests.subject_digest AS subject,
       digests.digest AS digest,
       NULL AS tag,
       'referrer' AS kind,
       CASE WHEN EXISTS (
           SELECT 1 FROM repo_digests AS present JOIN digests AS subject ON subject.id = present.digest_id
           WHERE present.repo_id = repos.id AND subject.digest = digests.subject_digest
       ) THEN 1 ELSE 0 END AS subject_present
FROM repo_digests
JOIN repos ON repos.id = repo_digests.repo_id
JOIN registries ON registries.id = repos.registry_id
JOIN digests ON digests.id = repo_digests.digest_id
WHERE digests.subject_digest IS NOT NULL
  AND NOT EXISTS (
      SELECT 1 FROM tags AS signature_tag
      WHERE signature_tag.repo_id = repo_digests.repo_id AND signature_tag.digest_id = repo_digests.digest_id
        AND SUBSTR(signature_tag.name, 1, 7) = 'sha256-'
  )
"""

RECLAIMABLE_VIEW = """
CREATE VIEW reclaimable AS
WITH released AS (
    SELECT registries.id AS registry_id, registries.name AS registry, digests.id AS digest_id,
           MAX(deletions.at) AS released_at
    FROM deletions
    JOIN registries ON registries.url = deletions.registry
    JOIN digests ON digests.digest = deletions.digest
    WHERE deletions.outcome = 'deleted'
    GROUP BY registries.id, registries.name, digests.id
),
freed AS (
    SELECT released.registry_id AS registry_id, released.registry AS registry, digests.digest AS blob_digest,
           'manifest' AS kind, digests.size AS size, released.released_at AS released_at
    FROM released
    JOIN digests ON digests.id = released.digest_id
    WHERE NOT EXISTS (
        SELECT 1 FROM repo_digests JOIN repos ON repos.id = repo_digests.repo_id
        WHERE repo_digests.digest_id = released.digest_id AND repos.registry_id = released.registry_id
    )
    UNION ALL
    SELECT released.registry_id AS registry_id, released.registry AS registry,
           digest_blobs.blob_digest AS blob_digest, digest_blobs.kind AS kind, digest_blobs.size AS size,
           released.released_at AS released_at
    FROM released
    JOIN digest_blobs ON digest_blobs.digest_id = released.digest_id
    WHERE NOT EXISTS (
        SELECT 1 FROM digest_blobs AS used
        JOIN repo_digests ON repo_digests.digest_id = used.digest_id
        JOIN repos ON repos.id = repo_digests.repo_id
        WHERE used.blob_digest = digest_blobs.blob_digest AND repos.registry_id = released.registry_id
    )
)
SELECT registry, blob_digest, MIN(kind) AS kind, MAX(size) AS size, MAX(released_at) AS released_at
FROM freed
GROUP BY registry_id, registry, blob_digest
"""


def upgrade() -> None:
    op.execute(SIGNATURES_VIEW)
    op.execute(RECLAIMABLE_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW reclaimable")
    op.execute("DROP VIEW signatures")
