"""The inventory's views: what SQL users and BI tools are meant to read, one line of meaning per column.

The views are a public contract (README, "The inventory as a data source"): a column may be added at the end,
never renamed or dropped. Every view carries ``registry`` (host[:port], as in image names), because one
inventory can hold several registries. The SQL is portable: the same statements run on SQLite and PostgreSQL.

The statements here are the current definitions. Migrations keep their own frozen copy (``images`` in 0001,
``signatures`` and ``reclaimable`` in 0003; ``digest_usage``, ``repo_stats``, ``blob_usage`` first in 0002, computed
on the fly, and since 0008 reading the summary tables of regdb/inventory/summaries.py), so that
history never changes under an existing inventory; to change a view, write a new migration and update it here
too. tests/test_sql.py checks that the two agree and that every column of every
view in a migrated database is documented below.

Sizes are compressed bytes, as the registry stores them. A manifest is itself a blob in the registry's storage,
so "bytes a repository holds" counts its manifests, their configs and their layers, each distinct blob once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class View:
    name: str
    doc: str
    """What one row is."""
    columns: dict[str, str]
    """Column name -> its meaning, in the view's column order."""
    sql: str
    """The CREATE VIEW statement."""


IMAGES = View(
    name="images",
    doc="One row per tag: what a tag points at, with the image's platform, build time and size.",
    columns={
        "registry": "Host[:port] of the registry, as in image names (registry.example.com:5000).",
        "repo": "Repository name (library/alpine, team/app).",
        "tag": "Tag name (latest, 1.4.2).",
        "digest": "Manifest digest the tag points at; an index (manifest list) for a multi-arch tag.",
        "media_type": "Manifest media type: Docker schema 2, Docker manifest list, OCI manifest or OCI index.",
        "created": "Build time from the image config (UTC); for an index, its newest child's.",
        "architecture": "CPU architecture from the image config; NULL for an index.",
        "os": "Operating system from the image config; NULL for an index.",
        "size": "Bytes of manifest + config + layers; for an index, the sum over its children.",
        "artifact_type": "What an OCI artifact is: the manifest's artifactType, else its config media type when "
                         "that is not an image config (OCI 1.1); NULL for a plain image.",
    },
    sql="""
CREATE VIEW images AS
SELECT registries.name AS registry,
       repos.name AS repo,
       tags.name AS tag,
       digests.digest AS digest,
       digests.media_type AS media_type,
       digests.created AS created,
       digests.architecture AS architecture,
       digests.os AS os,
       digests.total_size AS size,
       digests.artifact_type AS artifact_type
FROM tags
JOIN repos ON repos.id = tags.repo_id
JOIN registries ON registries.id = repos.registry_id
JOIN digests ON digests.id = tags.digest_id
""",
)

DIGEST_USAGE = View(
    name="digest_usage",
    doc="One row per manifest per registry holding it (tagged or not, index children included).",
    columns={
        "registry": "Host[:port] of the registry.",
        "digest": "Manifest digest (sha256:...).",
        "media_type": "Manifest media type: Docker schema 2, Docker manifest list, OCI manifest or OCI index.",
        "repos": "Repositories of this registry holding the manifest, tagged or not.",
        "tags": "Tags of this registry pointing at it; 0 for an untagged manifest (an index child, a leftover).",
        "size": "Bytes of manifest + config + layers; for an index, the sum over its children.",
    },
    sql="""
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
""",
)

# The figures come from summary_repos (regdb/inventory/summaries.py: each distinct blob a repository's manifests keep in
# storage, the manifests themselves included, counted once; unique when no other repository of the registry
# holds it). A repository no writer has summarised yet shows zeros rather than vanishing.
REPO_STATS = View(
    name="repo_stats",
    doc="One row per repository: its tags and manifests, and the bytes it holds in total and alone.",
    columns={
        "registry": "Host[:port] of the registry.",
        "repo": "Repository name.",
        "tags": "Tags in the repository.",
        "digests": "Manifests in the repository, tagged or not, index children included.",
        "total_bytes": "Bytes of the distinct blobs its manifests use: the manifests, configs and layers, "
                       "each blob counted once.",
        "unique_bytes": "The part of total_bytes no other repository of the same registry uses: about what a "
                        "garbage collection frees once the repository is deleted.",
    },
    sql="""
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
""",
)

BLOB_USAGE = View(
    name="blob_usage",
    doc="One row per blob (config or layer) per registry: how many manifests and repositories use it.",
    columns={
        "registry": "Host[:port] of the registry.",
        "blob_digest": "Digest of the blob (sha256:...).",
        "size": "Blob size in bytes (compressed, as stored).",
        "manifests": "Manifests of this registry that reference the blob.",
        "repos": "Repositories of this registry holding such a manifest.",
    },
    sql="""
CREATE VIEW blob_usage AS
SELECT registries.name AS registry,
       summary_blob_usage.blob_digest AS blob_digest,
       summary_blob_usage.size AS size,
       summary_blob_usage.manifests AS manifests,
       summary_blob_usage.repos AS repos
FROM summary_blob_usage
JOIN registries ON registries.id = summary_blob_usage.registry_id
""",
)

# Signatures and referrers belong to their subject (docs/registry-behaviour.md, "Referrers and signatures"): cosign's
# tags sha256-<64 hex>[.sig|.att|.sbom] name it in the tag (71 characters, then the suffix), OCI 1.1 referrers in
# their manifest's subject. A referrer that also carries such a tag is shown once, by its tag.
SIGNATURES = View(
    name="signatures",
    doc="One row per signature, attestation, SBOM or OCI referrer in a repository, with the digest it belongs to.",
    columns={
        "registry": "Host[:port] of the registry.",
        "repo": "Repository name.",
        "subject": "Digest of the manifest it belongs to (the signed image).",
        "digest": "Digest of the signature / attestation / SBOM / referrer manifest itself.",
        "tag": "Its tag (sha256-<hex>.sig and so on); NULL for an OCI 1.1 referrer found by its subject field.",
        "kind": "'sig', 'att', 'sbom' (cosign), 'referrers' (the OCI referrers fallback index tag sha256-<hex>), "
                "'referrer' (a manifest whose subject field names it), 'other' (another sha256-<hex>.* tag).",
        "subject_present": "1 when the subject is in the same repository; 0 for a signature left behind by its "
                           "image.",
    },
    sql="""
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
""",
)

# The 2-byte blob `{}` (OCI's empty descriptor): config and only layer of the placeholder manifest `regdb untag`
# pushes and deletes (regdb/cleanup/untag.py), stored once per registry.
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

# What `docker-registry garbage-collect` frees now: the blobs of manifests regdb deleted (deletions, outcome
# 'deleted') that no manifest still in the registry uses; the manifests themselves too, when no repository holds
# them any more (a manifest is a blob in the store); and what an untag left behind (outcome 'untagged' with a
# placeholder): its placeholder manifest, and the empty blob while no manifest in the inventory uses it. The
# same rule as a removal plan's bytes_freed, so after a removal SUM(size) here is what its result reported. regdb
# cannot see a garbage collection run: rows released before the last one you ran are already freed (filter on
# released_at).
RECLAIMABLE = View(
    name="reclaimable",
    doc="One row per blob a garbage collection would free after regdb's deletions (until it is run).",
    columns={
        "registry": "Host[:port] of the registry.",
        "blob_digest": "Digest of the blob: a deleted manifest itself (an untag's placeholder too), or a config or "
                       "layer only it used.",
        "kind": "'manifest', 'config' or 'layer'.",
        "size": "Bytes it takes in the registry's storage (compressed, as stored).",
        "released_at": "When regdb deleted the last manifest that used it (UTC).",
    },
    sql=f"""
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
    UNION ALL
    SELECT registries.id AS registry_id, registries.name AS registry, deletions.placeholder_digest AS blob_digest,
           'manifest' AS kind, deletions.placeholder_size AS size, deletions.at AS released_at
    FROM deletions
    JOIN registries ON registries.url = deletions.registry
    WHERE deletions.outcome = 'untagged' AND deletions.placeholder_digest IS NOT NULL
    UNION ALL
    SELECT registries.id AS registry_id, registries.name AS registry,
           '{EMPTY_DIGEST}' AS blob_digest,
           'config' AS kind, 2 AS size, MAX(deletions.at) AS released_at
    FROM deletions
    JOIN registries ON registries.url = deletions.registry
    WHERE deletions.outcome = 'untagged' AND deletions.placeholder_digest IS NOT NULL
      AND NOT EXISTS (
          SELECT 1 FROM digest_blobs AS used
          JOIN repo_digests ON repo_digests.digest_id = used.digest_id
          JOIN repos ON repos.id = repo_digests.repo_id
          WHERE used.blob_digest = '{EMPTY_DIGEST}'
            AND repos.registry_id = registries.id
      )
    GROUP BY registries.id, registries.name
)
SELECT registry, blob_digest, MIN(kind) AS kind, MAX(size) AS size, MAX(released_at) AS released_at
FROM freed
GROUP BY registry_id, registry, blob_digest
""",
)

# An index whose child the registry no longer has: the sync records the child as missing (issue #13).
BROKEN_INDEXES = View(
    name="broken_indexes",
    doc="One row per missing child of an index per repository holding the index.",
    columns={
        "registry": "Host[:port] of the registry.",
        "repo": "Repository holding the index.",
        "digest": "Digest of the index (manifest list).",
        "child_digest": "Digest of the child the index names and the registry no longer serves.",
        "architecture": "platform.architecture the index gives the child.",
        "os": "platform.os the index gives the child.",
        "variant": "platform.variant the index gives the child.",
        "tags": "Tags of the repository pointing at the index.",
    },
    sql="""
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
""",
)

VIEWS: tuple[View, ...] = (IMAGES, DIGEST_USAGE, REPO_STATS, BLOB_USAGE, SIGNATURES, RECLAIMABLE, BROKEN_INDEXES)



PULL_STATS = View(
    name="pull_stats",
    doc="One row per (repository, digest) the registry's notifications showed pulled (regdb's own requests "
        "never count): how often and how lately.",
    columns={
        "registry": "Host[:port] of the registry.",
        "repo": "Repository name.",
        "digest": "The manifest pulled (by tag or by digest); an index child pulled by digest is its own row.",
        "last_pulled_at": "The last pull seen (UTC).",
        "gets": "GET requests for the manifest, all days together.",
        "heads": "HEAD requests for the manifest (a client checking a tag), all days together.",
        "days": "Days (UTC) with at least one pull.",
        "first_day": "The first such day (YYYY-MM-DD).",
    },
    sql="""
CREATE VIEW pull_stats AS
SELECT registries.name AS registry,
       pulls.repo AS repo,
       pulls.digest AS digest,
       MAX(pulls.last_pulled_at) AS last_pulled_at,
       SUM(pulls.gets) AS gets,
       SUM(pulls.heads) AS heads,
       COUNT(*) AS days,
       MIN(pulls.day) AS first_day
FROM pulls
JOIN registries ON registries.id = pulls.registry_id
GROUP BY registries.name, pulls.repo, pulls.digest
""",
)

# Appended rather than edited into the tuple above, so parallel additions of views merge cleanly.
VIEWS = VIEWS + (PULL_STATS,)
