"""The example queries of docs/data-source.md, shipped with the package: ``regdb datasette-metadata`` offers them
as canned queries. tests/test_bi.py holds this list and the documentation equal, and the data-source suites run
every one on SQLite and PostgreSQL; ``make bench`` times each on a million tags.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    name: str
    title: str
    sql: str
    backend: str | None = None
    """'sqlite' or 'postgresql' when the SQL is one database's own; None when it runs on both."""


EXAMPLES: tuple[Example, ...] = (
    Example("largest-repositories", "The largest repositories", """
SELECT registry, repo, tags, digests, total_bytes
FROM repo_stats
ORDER BY total_bytes DESC, repo
LIMIT 10
"""),
    Example("tags-older-than-a-cutoff", "Tags whose image was built before a cutoff date", """
SELECT registry, repo, tag, created
FROM images
WHERE created < :cutoff
ORDER BY created, repo, tag
"""),
    Example("tags-older-than-90-days", "The 100 oldest tags built more than 90 days ago", """
SELECT registry, repo, tag, created
FROM images
WHERE created < datetime('now', '-90 days')
ORDER BY created, repo, tag
LIMIT 100
""", "sqlite"),
    Example("tags-older-than-90-days", "The 100 oldest tags built more than 90 days ago", """
SELECT registry, repo, tag, created
FROM images
WHERE created < (now() AT TIME ZONE 'UTC') - INTERVAL '90 days'
ORDER BY created, repo, tag
LIMIT 100
""", "postgresql"),
    Example("digests-shared-across-repositories", "Digests shared across repositories", """
SELECT registry, digest, repos, tags, size
FROM digest_usage
WHERE repos > 1
ORDER BY repos DESC, size DESC, digest
"""),
    Example("space-a-repository-holds-alone", "The space a repository holds alone, against all it uses", """
SELECT registry, repo, unique_bytes, total_bytes
FROM repo_stats
WHERE repo = :repo
"""),
    Example("most-shared-blobs", "The layers most widely shared", """
SELECT registry, blob_digest, size, manifests, repos
FROM blob_usage
ORDER BY repos DESC, manifests DESC, size DESC, blob_digest
LIMIT 10
"""),
    Example("totals-per-registry", "Totals per registry", """
SELECT registry, COUNT(*) AS repos, SUM(tags) AS tags, SUM(total_bytes) AS total_bytes
FROM repo_stats
GROUP BY registry
ORDER BY registry
"""),
    Example("where-a-tag-pointed-at-a-time", "Where a tag pointed at a given moment", """
SELECT registries.name AS registry, tag_history.digest
FROM tag_history
JOIN registries ON registries.id = tag_history.registry_id
WHERE tag_history.repo = :repo AND tag_history.tag = :tag
  AND tag_history.valid_from <= :at AND (tag_history.valid_to IS NULL OR tag_history.valid_to > :at)
"""),
    Example("repos-not-pulled-since", "Repositories by manifests nobody pulled since a cutoff", """
SELECT registries.name AS registry, repos.name AS repo, COUNT(*) AS manifests_not_pulled
FROM repo_digests
JOIN repos ON repos.id = repo_digests.repo_id
JOIN registries ON registries.id = repos.registry_id
JOIN digests ON digests.id = repo_digests.digest_id
WHERE NOT EXISTS (
    SELECT 1 FROM pulls
    WHERE pulls.registry_id = repos.registry_id AND pulls.repo = repos.name AND pulls.digest = digests.digest
      AND pulls.last_pulled_at >= :cutoff
)
GROUP BY registries.name, repos.name
ORDER BY manifests_not_pulled DESC, registry, repo
"""),
    Example("tags-not-pulled-since", "Tags of a repository whose manifest nobody pulled since a cutoff", """
SELECT images.registry, images.repo, images.tag, pull_stats.last_pulled_at
FROM images
LEFT JOIN pull_stats ON pull_stats.registry = images.registry AND pull_stats.repo = images.repo
                    AND pull_stats.digest = images.digest
WHERE images.repo = :repo AND (pull_stats.last_pulled_at IS NULL OR pull_stats.last_pulled_at < :cutoff)
ORDER BY images.registry, images.repo, images.tag
"""),
)


def examples_for(dialect: str) -> list[Example]:
    """The examples that run on ``dialect`` ('sqlite' or 'postgresql')."""
    return [example for example in EXAMPLES if example.backend in (None, dialect)]
