"""The inventory's views: what SQL users and BI tools are meant to read, one line of meaning per column.

The views are a public contract (README, "The inventory as a data source"): a column may be added at the end,
never renamed or dropped. Every view carries ``registry`` (host[:port], as in image names), because one
inventory can hold several registries. The SQL is portable: the same statements run on SQLite and PostgreSQL.

The statements here are the current definitions. Migrations keep their own frozen copy (``images`` in 0001,
the others in 0002), so that history never changes under an existing inventory; to change a view, write a new
migration and update it here too. tests/test_sql.py checks that the two agree and that every column of every
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
       digests.total_size AS size
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
       COUNT(DISTINCT repo_digests.repo_id) AS repos,
       COUNT(tags.id) AS tags,
       digests.total_size AS size
FROM repo_digests
JOIN repos ON repos.id = repo_digests.repo_id
JOIN registries ON registries.id = repos.registry_id
JOIN digests ON digests.id = repo_digests.digest_id
LEFT JOIN tags ON tags.repo_id = repo_digests.repo_id AND tags.digest_id = repo_digests.digest_id
GROUP BY registries.id, registries.name, digests.id, digests.digest, digests.media_type, digests.total_size
""",
)

# held: every blob a repository's manifests keep in the registry's storage (the manifests themselves, configs,
# layers); repo_blobs: each once per repository; blob_repos: how many repositories of the registry hold it.
# SUM over BIGINT is NUMERIC on PostgreSQL: the casts keep the columns integers on both databases.
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
       digest_blobs.blob_digest AS blob_digest,
       MAX(digest_blobs.size) AS size,
       COUNT(DISTINCT digest_blobs.digest_id) AS manifests,
       COUNT(DISTINCT repo_digests.repo_id) AS repos
FROM digest_blobs
JOIN repo_digests ON repo_digests.digest_id = digest_blobs.digest_id
JOIN repos ON repos.id = repo_digests.repo_id
JOIN registries ON registries.id = repos.registry_id
GROUP BY registries.id, registries.name, digest_blobs.blob_digest
""",
)

VIEWS: tuple[View, ...] = (IMAGES, DIGEST_USAGE, REPO_STATS, BLOB_USAGE)

